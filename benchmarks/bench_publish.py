"""B: publishing one million mart rows to Redis and to PostgreSQL.

    python -m benchmarks.bench_publish                       # 1,000,000 rows
    BENCH_ROWS=200000 BENCH_BASELINE_ROWS=20000 python -m benchmarks.bench_publish

The mart has the shape of the example's `marts.customer_analytics` (13 columns: ids, text,
timestamps, DECIMAL, doubles, booleans). Real servers from `tests/services.py`. Contenders,
each in its own process (peak RSS is its own); times cover the work only, not start-up:

Redis
- duckherd: `run_publish` end to end: gate, read the mart from the DuckDB file, render it,
  pipelined HSET into a staging hash, atomic swap, old version freed.
- raw limit: redis-benchmark-like — the same key/JSON pairs, RESP `SET` commands prepared
  before the clock starts, written down one socket with no round-trip waits.
- redis-benchmark itself: `SET` of random keys with values of the documents' mean size,
  pipelined 64 deep (the tool's own number, for reference).
- row at a time: one `HSET` per row with redis-py, a round trip each (on BENCH_BASELINE_ROWS
  rows, default 200,000: its cost is linear, the table compares rows per second).

PostgreSQL
- duckherd: `run_publish` end to end: read, CSV via Arrow, COPY into a staging table,
  rename swap, all in one transaction.
- raw limit: plain `COPY ... FROM STDIN` of the same rows, CSV written by DuckDB before the
  clock starts, into an existing empty table (no swap, no transaction bookkeeping).
- row at a time: `INSERT` per row (psycopg2 executemany) in one transaction.

`duckherd faster by` is contender time per row over Duckherd's time per row: below 1 the
contender is faster (the raw limits are, by design); the goal is the raw limit within 2x.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import duckdb
from psycopg2.extensions import cursor as PgCursor

from benchmarks import Measurement, report, run_contender

ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
BASELINE_ROWS = min(ROWS, int(os.environ.get("BENCH_BASELINE_ROWS", "200000")))
MART = "marts.customer_analytics"

MART_SQL = """
CREATE OR REPLACE TABLE marts.customer_analytics AS
SELECT
    i AS customer_id,
    'Customer ' || i AS customer_name,
    'c' || i || '@example.com' AS email,
    ['US', 'DE', 'FR', 'GB', 'JP'][1 + i % 5] AS country,
    ['smb', 'mid-market', 'enterprise'][1 + i % 3] AS segment,
    i % 7 <> 0 AS is_active,
    TIMESTAMPTZ '2021-01-01 00:00:00+00' + to_seconds(i * 7919 % 157680000) AS created_at,
    TIMESTAMPTZ '2025-06-01 00:00:00+00' + to_seconds(i * 104729 % 31536000) AS updated_at,
    i % 97 AS orders_count,
    round((i * 7 % 100000) * 1.37, 2)::DECIMAL(14, 2) AS total_revenue,
    (i % 60) AS months_active,
    (i * 7 % 100000) * 1.37 / nullif(i % 60, 0) AS monthly_ltv,
    (i * 7 % 100000) * 1.37 / nullif(i % 97, 0) AS average_order_value
FROM range(1, ? + 1) AS t(i)
"""
# The documents Duckherd publishes, for the contenders that bring their own writer.
DOCUMENTS_SQL = """
SELECT CAST(customer_id AS VARCHAR) AS k, CAST(to_json(m) AS VARCHAR) AS v
FROM marts.customer_analytics AS m
"""


def build_warehouse(path: Path, rows: int) -> None:
    from duckherd_jobs.warehouse import connect

    with connect(path) as connection:
        connection.execute(MART_SQL, [rows])


# ----------------------------------------------------------------------- contenders (children)


def _pipeline(target: dict[str, object]) -> object:
    from tests.pipelines import pipeline

    return pipeline(
        "bench",
        "bench",
        sources=[{"name": "customers", "file": {"path": "/dev/null", "format": "csv"}}],
        publish=[{"table": MART, **target}],
    )


def duckherd_publish(target: dict[str, object], env: dict[str, str]) -> None:
    from duckherd_jobs.context import StageContext
    from duckherd_jobs.publish import run_publish

    ctx = StageContext(
        pipeline=_pipeline(target),  # type: ignore[arg-type]
        warehouse=Path(os.environ["BENCH_WAREHOUSE"]),
        run_id="bench",
        env=env,
    )
    started = time.perf_counter()
    summary = run_publish(ctx)
    seconds = time.perf_counter() - started
    if not summary.ok:
        raise SystemExit(f"publish failed: {summary.error}")
    report({"seconds": seconds, "rows": summary.published[0].rows})


def duckherd_redis() -> None:
    ref = {"name": "bench", "key": "url"}
    duckherd_publish(
        {"redis": {"urlSecretRef": ref, "keyPrefix": "bench:duckherd"}},
        {"DUCKHERD_SECRET_BENCH_URL": os.environ["BENCH_REDIS_URL"]},
    )


def duckherd_postgres() -> None:
    ref = {"name": "bench", "key": "dsn"}
    duckherd_publish(
        {"postgres": {"dsnSecretRef": ref, "table": "duckherd_customer_analytics"}},
        {"DUCKHERD_SECRET_BENCH_DSN": os.environ["BENCH_PG_DSN"]},
    )


def _documents(rows: int) -> tuple[list[str], list[str]]:
    with duckdb.connect(os.environ["BENCH_WAREHOUSE"], read_only=True) as connection:
        table = connection.sql(f"{DOCUMENTS_SQL} LIMIT {rows}").to_arrow_table()
    return table.column("k").to_pylist(), table.column("v").to_pylist()


def _redis_address() -> tuple[str, int, str]:
    from urllib.parse import urlsplit

    url = urlsplit(os.environ["BENCH_REDIS_URL"])
    return url.hostname or "127.0.0.1", url.port or 6379, url.password or ""


def _resp(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def redis_raw_limit() -> None:
    keys, values = _documents(ROWS)
    host, port, password = _redis_address()
    payload = b"".join(
        _resp(b"SET", b"bench:raw:" + k.encode(), v.encode())
        for k, v in zip(keys, values, strict=True)
    )
    with socket.create_connection((host, port)) as sock:
        sock.sendall(_resp(b"AUTH", password.encode()))
        assert sock.recv(64).startswith(b"+OK")
        started = time.perf_counter()
        reader = threading.Thread(target=_read_replies, args=(sock, len(keys) * len(b"+OK\r\n")))
        reader.start()
        sock.sendall(payload)
        reader.join()
        seconds = time.perf_counter() - started
    report({"seconds": seconds, "rows": len(keys)})


def _read_replies(sock: socket.socket, expected_bytes: int) -> None:
    received = 0
    while received < expected_bytes:
        chunk = sock.recv(1 << 20)
        if not chunk or chunk.startswith(b"-"):
            raise RuntimeError(f"redis replied {chunk[:200]!r}")
        received += len(chunk)


def redis_benchmark_tool() -> None:
    _, values = _documents(min(ROWS, 10_000))
    size = sum(len(v.encode()) for v in values) // len(values)
    host, port, password = _redis_address()
    command = [
        "redis-benchmark", "-h", host, "-p", str(port), "-a", password, "-t", "set",
        "-n", str(ROWS), "-r", str(ROWS), "-d", str(size), "-P", "64", "-q", "--csv",
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(output.strip().splitlines()[-1].split(",")[1].strip('"'))
    report({"seconds": ROWS / rps, "rows": ROWS})


def redis_row_at_a_time() -> None:
    import redis

    keys, values = _documents(BASELINE_ROWS)
    client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    started = time.perf_counter()
    for key, value in zip(keys, values, strict=True):
        client.hset("bench:rowwise:rows", key, value)
    seconds = time.perf_counter() - started
    report({"seconds": seconds, "rows": len(keys)})


def _postgres_columns() -> str:
    from duckherd_jobs.publish.mart import describe_mart
    from duckherd_jobs.publish.postgres_target import postgres_type

    with duckdb.connect(os.environ["BENCH_WAREHOUSE"], read_only=True) as connection:
        mart = describe_mart(connection, MART, "bench")
    return ", ".join(f'"{c.name}" {postgres_type(c.type)}' for c in mart.columns)


def _fresh_table(cursor: PgCursor, name: str) -> None:
    cursor.execute(f"DROP TABLE IF EXISTS {name}")
    cursor.execute(f"CREATE TABLE {name} ({_postgres_columns()})")


def postgres_raw_limit() -> None:
    import psycopg2

    csv = Path(os.environ["BENCH_WAREHOUSE"]).with_suffix(".csv")
    with duckdb.connect(os.environ["BENCH_WAREHOUSE"], read_only=True) as warehouse:
        warehouse.execute(f"COPY (SELECT * FROM {MART}) TO '{csv}' (HEADER false)")
    connection = psycopg2.connect(os.environ["BENCH_PG_DSN"])
    with connection, connection.cursor() as cursor:
        _fresh_table(cursor, "raw_customer_analytics")
    with connection, connection.cursor() as cursor, csv.open("rb") as data:
        started = time.perf_counter()
        cursor.copy_expert(
            "COPY raw_customer_analytics FROM STDIN WITH (FORMAT csv)", data, size=1 << 20
        )
        seconds = time.perf_counter() - started
        rows = cursor.rowcount
    connection.close()
    csv.unlink()
    report({"seconds": seconds, "rows": rows})


def postgres_row_at_a_time() -> None:
    import psycopg2

    with duckdb.connect(os.environ["BENCH_WAREHOUSE"], read_only=True) as warehouse:
        rows = warehouse.sql(f"SELECT * FROM {MART} LIMIT {BASELINE_ROWS}").fetchall()
    connection = psycopg2.connect(os.environ["BENCH_PG_DSN"])
    with connection, connection.cursor() as cursor:
        _fresh_table(cursor, "rowwise_customer_analytics")
    placeholders = ", ".join(["%s"] * len(rows[0]))
    with connection, connection.cursor() as cursor:
        started = time.perf_counter()
        cursor.executemany(f"INSERT INTO rowwise_customer_analytics VALUES ({placeholders})", rows)
        seconds = time.perf_counter() - started
    connection.close()
    report({"seconds": seconds, "rows": len(rows)})


CONTENDERS: dict[str, Callable[[], None]] = {
    "duckherd-redis": duckherd_redis,
    "raw-redis": redis_raw_limit,
    "redis-benchmark": redis_benchmark_tool,
    "rowwise-redis": redis_row_at_a_time,
    "duckherd-postgres": duckherd_postgres,
    "raw-postgres": postgres_raw_limit,
    "rowwise-postgres": postgres_row_at_a_time,
}

# ----------------------------------------------------------------------- the table (parent)


def print_rates(title: str, measurements: list[Measurement], reference: str) -> None:
    ref = next(m for m in measurements if m.name == reference)
    ref_rate = ref.rows / ref.seconds
    header = (
        f"{'contender':<40} {'seconds':>8} {'rows':>9} {'rows/s':>11} "
        f"{'duckherd faster by':>19} {'peak RSS MB':>12}"
    )
    print(f"\n{title}\n{header}\n{'-' * len(header)}")
    for m in measurements:
        rate = m.rows / m.seconds
        print(
            f"{m.name:<40} {m.seconds:>8.2f} {m.rows:>9} {rate:>11,.0f} "
            f"{ref_rate / rate:>18.2f}x {m.peak_rss_mb:>12.0f}"
        )


def _flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()


def _contender(name: str, env: dict[str, str]) -> Measurement:
    os.environ.update(env)
    return run_contender(name, "benchmarks.bench_publish", ["contender", name])


def _servers(stack: ExitStack) -> tuple[str, str]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.services import postgres_server, redis_server

    redis = stack.enter_context(redis_server())
    postgres = stack.enter_context(postgres_server())
    return redis.url(), postgres.dsn()


def _run_all(env: dict[str, str]) -> Iterator[tuple[str, list[Measurement], str]]:
    redis_runs = []
    for name in ("duckherd-redis", "raw-redis", "redis-benchmark", "rowwise-redis"):
        redis_runs.append(_contender(name, env))
        _flush_redis(env["BENCH_REDIS_URL"])
    yield "Redis: 1 mart to 1 Redis", redis_runs, "duckherd-redis"
    postgres_runs = [
        _contender(name, env) for name in ("duckherd-postgres", "raw-postgres", "rowwise-postgres")
    ]
    yield "PostgreSQL: 1 mart to 1 table", postgres_runs, "duckherd-postgres"


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="duckherd-bench-publish-"))
    try:
        warehouse = workdir / "warehouse.duckdb"
        build_warehouse(warehouse, ROWS)
        with ExitStack() as stack:
            redis_url, pg_dsn = _servers(stack)
            env = {"BENCH_WAREHOUSE": str(warehouse), "BENCH_REDIS_URL": redis_url,
                   "BENCH_PG_DSN": pg_dsn}  # fmt: skip
            print(f"{ROWS:,} mart rows ({BASELINE_ROWS:,} for the row-at-a-time baselines)")
            load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
            print(f"{os.cpu_count()} CPUs, load average {load} (ratios are only as calm as this)")
            for title, measurements, reference in _run_all(env):
                print_rates(title, measurements, reference)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "contender":
        CONTENDERS[sys.argv[2]]()
    else:
        main()
