"""B2: five million rows from PostgreSQL into DuckDB.

    python -m benchmarks.bench_ingest_postgres
    BENCH_PG_ROWS=500000 BENCH_SKIP_DLT=1 python -m benchmarks.bench_ingest_postgres

A real PostgreSQL server is started for the run (tests/services.py) with a customers-like
table. Contenders, each in its own process:
- duckherd: the ingest stage, `postgres.table` source, full load;
- raw limit: psycopg2 `COPY (SELECT * FROM t) TO STDOUT` (CSV) into a file + one DuckDB
  `read_csv` into a table;
- dlt `sql_database` (`sql_table`) with its fastest installed backend, pyarrow (connectorx
  is not installed), into DuckDB.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import Measurement, print_table, report, run_contender

MODULE = "benchmarks.bench_ingest_postgres"
TABLE = "bench_customers"

CREATE = """
DROP TABLE IF EXISTS {table};
CREATE TABLE {table} AS
SELECT i AS customer_id,
       'customer ' || i AS name,
       'contact.' || i || '@example.com' AS email,
       (ARRAY['US','DE','GB','FR','CA'])[1 + i % 5] AS country,
       (ARRAY['SMB','Mid-Market','Enterprise'])[1 + i % 3] AS segment,
       timestamptz '2021-01-01 00:00:00+00' + (i % 1000000) * interval '1 minute' AS created_at,
       timestamptz '2024-01-01 00:00:00+00' + (i % 700000) * interval '1 minute' AS updated_at,
       round((i % 100000) * 1.37, 2)::numeric(12,2) AS total_revenue,
       i % 250 AS orders_count,
       i % 10 <> 0 AS is_active
FROM generate_series(1, {rows}) AS i;
ANALYZE {table};
"""


def _duckherd(dsn: str, workdir: Path) -> dict[str, float | int]:
    from tests.pipelines import pipeline as make_pipeline

    from duckherd_jobs.context import StageContext
    from duckherd_jobs.runner import run_stage

    postgres = {"dsnSecretRef": {"name": "pg", "key": "dsn"}, "table": TABLE}
    pipeline = make_pipeline("bench", sources=[{"name": "customers", "postgres": postgres}])
    import duckherd_jobs.ingest  # noqa: F401 (imported before the clock starts, like the others)

    ctx = StageContext(
        pipeline=pipeline,
        warehouse=workdir / "warehouse.duckdb",
        run_id="bench",
        env={"DUCKHERD_SECRET_PG_DSN": dsn},
    )
    started = time.perf_counter()
    summary = run_stage("ingest", ctx)
    seconds = time.perf_counter() - started
    if not summary.ok:
        raise RuntimeError(summary.error)
    return {"seconds": seconds, "rows": summary.tables["raw.customers"].loaded or 0}


def _raw(dsn: str, workdir: Path) -> dict[str, float | int]:
    import duckdb
    import psycopg2

    spool = workdir / "copy.csv"
    started = time.perf_counter()
    connection = psycopg2.connect(dsn)
    with connection.cursor() as cursor, spool.open("wb") as file:
        cursor.copy_expert(
            f"COPY (SELECT * FROM {TABLE}) TO STDOUT WITH (FORMAT csv, HEADER)", file
        )
    connection.close()
    warehouse = duckdb.connect(str(workdir / "warehouse.duckdb"))
    warehouse.execute("CREATE TABLE customers AS SELECT * FROM read_csv(?)", [str(spool)])
    row = warehouse.execute("SELECT count(*) FROM customers").fetchone()
    warehouse.close()
    return {"seconds": time.perf_counter() - started, "rows": int(row[0]) if row else 0}


def _dlt(dsn: str, workdir: Path) -> dict[str, float | int]:
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    import dlt
    import duckdb
    from dlt.sources.sql_database import sql_table

    parts = dict(item.split("=", 1) for item in dsn.split())
    url = (
        f"postgresql+psycopg2://{parts['user']}:{parts['password']}@{parts['host']}:"
        f"{parts['port']}/{parts['dbname']}"
    )
    warehouse = workdir / "warehouse.duckdb"
    pipeline = dlt.pipeline(
        pipeline_name="bench_pg",
        destination=dlt.destinations.duckdb(str(warehouse)),
        dataset_name="raw",
        pipelines_dir=str(workdir / "dlt"),
    )
    started = time.perf_counter()
    pipeline.run(sql_table(credentials=url, table=TABLE, backend="pyarrow"))
    seconds = time.perf_counter() - started
    connection = duckdb.connect(str(warehouse), read_only=True)
    row = connection.execute(f"SELECT count(*) FROM raw.{TABLE}").fetchone()
    connection.close()
    return {"seconds": seconds, "rows": int(row[0]) if row else 0}


CONTENDERS = {"duckherd": _duckherd, "raw": _raw, "dlt": _dlt}
LABELS = {
    "duckherd": "duckherd ingest",
    "raw": "raw limit (COPY + read_csv)",
    "dlt": "dlt sql_table (pyarrow)",
}


def main() -> None:
    import psycopg2
    from tests.services import postgres_server

    rows = int(os.environ.get("BENCH_PG_ROWS", "5000000"))
    names = ["duckherd", "raw"] + ([] if os.environ.get("BENCH_SKIP_DLT") == "1" else ["dlt"])
    with postgres_server() as server:
        connection = psycopg2.connect(server.dsn())
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(CREATE.format(table=TABLE, rows=int(rows)))
        connection.close()
        measurements: list[Measurement] = []
        for name in names:
            workdir = Path(tempfile.mkdtemp(prefix=f"bench-pg-{name}-"))
            try:
                measurement = run_contender(
                    LABELS[name], MODULE, ["child", name, server.dsn(), str(workdir)]
                )
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            if measurement.rows != rows:
                raise RuntimeError(f"{name} loaded {measurement.rows} rows, expected {rows}")
            measurements.append(measurement)
    print_table(f"B2: {rows:,} rows from PostgreSQL", measurements, LABELS["duckherd"])


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        report(CONTENDERS[sys.argv[2]](sys.argv[3], Path(sys.argv[4])))
    else:
        main()
