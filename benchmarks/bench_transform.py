"""B3: the transform stage on 10,000,000 rows vs running dbt's compiled SQL directly in DuckDB.

    python -m benchmarks.bench_transform [--rows 10000000] [--repeat 3]

Every contender runs in a fresh process, as a pod would, against the same warehouse file
(`raw.customers` shaped like the demo source, marts already built once so each run replaces
them), side by side in one run; the median wall time and the process's peak RSS are reported:

- sql: the SQL dbt compiled for the default project (the two models and their five data
  tests), executed by a bare `python -c "import duckdb ..."`: the physical limit.
- duckherd: `duckherd job transform`, the stage a pod runs, with the project prepared as the
  image prepares it (`python -m duckherd_jobs.transform prepare`): no parsing.
- duckherd, parsing: the same stage on a project nobody prepared, on its first run (it
  parses, and keeps the manifest beside the warehouse).
- duckherd, volume project: that project on its later runs (the kept manifest, no parsing).
- dbt CLI: stock `dbt build` with the same profile (partial parsing, writes artifacts).

The goal: duckherd <= 1.1 x sql + 1.5 s. The fixed part is read from a run on a tiny table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
PIPELINE = """\
apiVersion: duckherd.io/v1alpha1
kind: DataPipeline
metadata: {name: bench}
spec:
  schedule: "0 6 * * *"
  sources:
    - name: customers
      http: {url: "http://127.0.0.1:9/customers"}
  transform:
    dbt: {threads: 1}
"""


@dataclass(frozen=True)
class Measurement:
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float


def make_raw(warehouse: Path, rows: int) -> None:
    """raw.customers as ingest lands the demo source's records, plus ingest's `_` column;
    raw.orders empty."""
    with duckdb.connect(str(warehouse)) as connection:
        connection.execute("CREATE SCHEMA IF NOT EXISTS raw")
        connection.execute(
            """
            CREATE OR REPLACE TABLE raw.customers AS
            SELECT
                i AS customer_id,
                'Customer ' || i AS name,
                'c' || i || '@Example.com' AS email,
                ['US', 'DE', 'FR', 'GB', 'JP'][1 + i % 5] AS country,
                ['SMB', 'Mid-Market', 'Enterprise'][1 + i % 3] AS segment,
                TIMESTAMPTZ '2021-01-01 00:00:00+00' + to_seconds(i * 7919 % 157680000)
                    AS created_at,
                TIMESTAMPTZ '2025-06-01 00:00:00+00' + to_seconds(i * 104729 % 31536000)
                    AS updated_at,
                round((i * 7 % 100000) * 1.37, 2) AS total_revenue,
                i % 97 AS orders_count,
                i % 7 <> 0 AS is_active,
                now() AS _duckherd_loaded_at
            FROM range(1, ? + 1) AS t(i)
            """,
            [rows],
        )
        # The default project's second source (the example's orders): present, empty here.
        connection.execute(
            "CREATE OR REPLACE TABLE raw.orders (order_id BIGINT, customer_id BIGINT, "
            "ordered_at VARCHAR, status VARCHAR, order_total DOUBLE, "
            "_duckherd_loaded_at TIMESTAMPTZ)"
        )


def run_measured(command: list[str], env: dict[str, str], cwd: Path) -> Measurement:
    """Wall time and peak RSS of one child process (os.wait4 gives the child's own rusage)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert process.stderr is not None
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed:\n{stderr.decode()[-3000:]}")
    return Measurement(elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def compiled_sql(project: Path, warehouse: Path, workdir: Path) -> list[str]:
    """The statements dbt runs for the project: models (views/tables) and data tests."""
    from duckherd_jobs.transform.invocation import (
        DbtInvocation,
        _close_duckdb,
        build_args,
        write_profile,
    )

    invocation = DbtInvocation(
        project=project, warehouse=warehouse, workdir=workdir, command="compile"
    )
    profiles = write_profile(workdir / "profile", warehouse, threads=1)
    args = [a for a in build_args(invocation, profiles) if a != "--no-write-json"]
    from dbt.cli.main import dbtRunner

    try:
        result = dbtRunner().invoke(args)
    finally:
        _close_duckdb()  # release the file for the contenders
    if not result.success:
        raise RuntimeError(f"dbt compile failed: {result.exception}")
    manifest = json.loads((workdir / "target" / "manifest.json").read_text())
    order = {model: i for i, model in enumerate(_topological(manifest))}
    statements: list[tuple[int, str]] = []
    for unique_id, node in manifest["nodes"].items():
        code = node.get("compiled_code")
        if code is None or unique_id not in order:
            continue
        relation = f'"{node["database"]}"."{node["schema"]}"."{node["alias"]}"'
        kind = node["config"]["materialized"]
        if node["resource_type"] == "test":
            sql = f"SELECT count(*) FROM ({code}) AS failures"
        elif kind == "view":
            sql = f"CREATE OR REPLACE VIEW {relation} AS {code}"
        else:
            sql = f"CREATE OR REPLACE TABLE {relation} AS {code}"
        statements.append((order[unique_id], sql))
    schemas = sorted(
        {(n["database"], n["schema"]) for n in manifest["nodes"].values() if "compiled_code" in n}
    )
    creates = [f'CREATE SCHEMA IF NOT EXISTS "{db}"."{schema}"' for db, schema in schemas]
    return creates + [sql for _, sql in sorted(statements)]


def _topological(manifest: dict[str, Any]) -> list[str]:
    done: list[str] = []

    def visit(unique_id: str) -> None:
        if unique_id in done or unique_id not in manifest["nodes"]:
            return
        for parent in manifest["nodes"][unique_id]["depends_on"]["nodes"]:
            visit(parent)
        done.append(unique_id)

    for unique_id in sorted(manifest["nodes"], key=lambda u: not u.startswith("model.")):
        visit(unique_id)
    return done


SQL_RUNNER = textwrap.dedent(
    """
    import json, sys, duckdb
    warehouse, statements = sys.argv[1], json.load(open(sys.argv[2]))
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute(f"ATTACH '{warehouse}' AS warehouse")
    for sql in statements:
        connection.execute(sql).fetchall()
    connection.close()
    """
)


def contenders(work: Path, warehouse: Path, statements: Path) -> dict[str, list[str]]:
    python = str(VENV_BIN / "python")
    termination = str(work / "termination-log")
    job = [
        str(VENV_BIN / "duckherd"),
        "job",
        "transform",
        "--spec",
        str(work / "pipeline.yaml"),
        "--warehouse",
        str(warehouse),
        "--termination-log",
        termination,
    ]
    return {
        "sql": [python, "-c", SQL_RUNNER, str(warehouse), str(statements)],
        "duckherd": job,
        "duckherd, parsing": job,
        "duckherd, volume project": job,
        "dbt CLI": [
            str(VENV_BIN / "dbt"),
            "build",
            "--project-dir",
            str(work / "unprepared"),
            "--profiles-dir",
            str(work / "cli-profile"),
            "--profile",
            "duckherd",
            "--target-path",
            str(work / "cli-target"),
            "--log-path",
            str(work / "cli-logs"),
            "--no-send-anonymous-usage-stats",
        ],
    }


def environments(work: Path) -> dict[str, dict[str, str]]:
    base = {**os.environ, "DO_NOT_TRACK": "1"}
    base.pop("DUCKHERD_DBT_PROJECT", None)
    return {
        "sql": base,
        "duckherd": {**base, "DUCKHERD_DBT_PROJECT": str(work / "prepared")},
        "duckherd, parsing": {**base, "DUCKHERD_DBT_PROJECT": str(work / "unprepared")},
        "duckherd, volume project": {**base, "DUCKHERD_DBT_PROJECT": str(work / "unprepared")},
        "dbt CLI": base,
    }


def measure(rows: int, repeat: int, work: Path) -> dict[str, Measurement]:
    from duckherd_jobs.transform.invocation import write_profile
    from duckherd_jobs.transform.stage import MANIFEST_CACHE_DIR

    warehouse = work / f"warehouse-{rows}.duckdb"
    make_raw(warehouse, rows)
    statements = work / f"statements-{rows}.json"
    statements.write_text(json.dumps(compiled_sql(work / "unprepared", warehouse, work / "c")))
    write_profile(work / "cli-profile", warehouse, threads=1)
    commands, envs = contenders(work, warehouse, statements), environments(work)
    manifests = warehouse.parent / MANIFEST_CACHE_DIR
    for name, command in commands.items():  # warm-up: marts exist, caches are hot
        run_measured(command, envs[name], work)
    samples: dict[str, list[Measurement]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, command in commands.items():  # interleaved: load spikes hit every contender
            if name == "duckherd, parsing":
                shutil.rmtree(manifests, ignore_errors=True)
            samples[name].append(run_measured(command, envs[name], work))
    return {
        name: Measurement(
            statistics.median(m.seconds for m in taken),
            statistics.median(m.cpu_seconds for m in taken),
            max(m.peak_rss_mb for m in taken),
        )
        for name, taken in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--small-rows", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from duckherd_jobs.transform import prepare_project

    with tempfile.TemporaryDirectory(prefix="bench-transform-") as directory:
        work = Path(directory)
        (work / "pipeline.yaml").write_text(PIPELINE)
        for name in ("prepared", "unprepared"):
            shutil.copytree(
                REPO / "dbt", work / name, ignore=shutil.ignore_patterns("target", "logs")
            )
        prepare_project(work / "prepared")
        small = measure(args.small_rows, args.repeat, work)
        large = measure(args.rows, args.repeat, work)
    report(args.rows, args.small_rows, small, large)


def report(
    rows: int, small_rows: int, small: dict[str, Measurement], large: dict[str, Measurement]
) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"B3 transform: {rows:,} rows (fixed cost from {small_rows:,} rows)")
    for column in (
        "contender",
        "seconds",
        "x sql",
        "CPU s",
        f"seconds @{small_rows:,}",
        "fixed s (vs sql)",
        "fixed CPU s",
        "peak RSS MB",
    ):
        table.add_column(column, justify="right" if column != "contender" else "left")
    sql, sql_small = large["sql"].seconds, small["sql"].seconds
    for name, measured in large.items():
        table.add_row(
            name,
            f"{measured.seconds:.2f}",
            f"{measured.seconds / sql:.2f}",
            f"{measured.cpu_seconds:.2f}",
            f"{small[name].seconds:.2f}",
            f"{small[name].seconds - sql_small:+.2f}",
            f"{small[name].cpu_seconds - small['sql'].cpu_seconds:+.2f}",
            f"{measured.peak_rss_mb:.0f}",
        )
    console = Console(width=140)
    console.print(table)
    duckherd = large["duckherd"].seconds
    budget = 1.1 * sql + 1.5
    verdict = "met" if duckherd <= budget else "MISSED"
    console.print(
        f"goal duckherd <= 1.1 x sql + 1.5 s = {budget:.2f} s: {duckherd:.2f} s ({verdict}); "
        f"duckherd - sql = {duckherd - sql:+.2f} s"
    )


if __name__ == "__main__":
    main()
