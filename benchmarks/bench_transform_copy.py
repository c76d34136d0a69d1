"""What whole-run atomicity costs the transform stage: the warehouse copy and the swap.

    python -m benchmarks.bench_transform_copy [--rows 10000] [--repeat 3]

The transform stage builds on a copy of the warehouse and renames it over the warehouse on
success (jobs/duckherd_jobs/transform/build_copy.py). On a warehouse shaped like the example's
(`raw.customers` like the demo source, the default dbt project's marts built once), this
reports side by side, median of `--repeat`:

- the whole stage in process (`run_stage("transform")`, copy and swap included);
- the copy and the swap alone (`start_build` + `swap_in`), and their share of the stage;
- the alternative that was not picked: snapshotting the dbt-built tables inside DuckDB in one
  transaction (`CREATE TABLE ... AS SELECT` of every table in `staging`/`marts`), which a
  restore would have to undo again on failure.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
from tests import pipelines

from benchmarks.bench_transform import make_raw
from duckherd_jobs.context import StageContext
from duckherd_jobs.runner import run_stage
from duckherd_jobs.transform.build_copy import discard_build, start_build, swap_in

REPO = Path(__file__).resolve().parents[1]


def timed(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def snapshot_in_transaction(warehouse: Path) -> None:
    with duckdb.connect(str(warehouse)) as connection:
        tables = connection.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() "
            "WHERE schema_name IN ('staging', 'marts')"
        ).fetchall()
        connection.execute("BEGIN")
        connection.execute("CREATE SCHEMA IF NOT EXISTS _snapshot")
        for schema, table in tables:
            connection.execute(
                f'CREATE OR REPLACE TABLE _snapshot."{schema}__{table}" AS '
                f'SELECT * FROM "{schema}"."{table}"'
            )
        connection.execute("COMMIT")
        connection.execute("DROP SCHEMA _snapshot CASCADE")


def copy_and_swap(warehouse: Path) -> None:
    with duckdb.connect(str(warehouse)) as held:
        build = start_build(held, warehouse, "bench")
        try:
            swap_in(build, warehouse)
        finally:
            discard_build(build)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="duckherd-bench-copy-") as directory:
        warehouse = Path(directory) / "warehouse.duckdb"
        make_raw(warehouse, args.rows)
        spec: dict[str, Any] = {
            "sources": [{"name": "customers", "http": {"url": "http://127.0.0.1:9/c"}}],
            "transform": {"dbt": {"project": {"path": str(REPO / "dbt")}}},
        }
        ctx = StageContext(
            pipeline=pipelines.pipeline("bench", **spec),
            warehouse=warehouse,
            run_id="bench",
            env={"DUCKHERD_DBT_LOG_LEVEL": "none"},
        )
        assert run_stage("transform", ctx).ok  # the marts exist: each run replaces them
        stage = timed(lambda: run_stage("transform", ctx), args.repeat)
        copy = timed(lambda: copy_and_swap(warehouse), args.repeat)
        snapshot = timed(lambda: snapshot_in_transaction(warehouse), args.repeat)
        size_mb = warehouse.stat().st_size / 1e6
    print(f"rows {args.rows:,}, warehouse {size_mb:.1f} MB, median of {args.repeat}")
    print(f"{'transform stage (copy + swap included)':<44} {stage:8.3f} s")
    print(f"{'copy + swap':<44} {copy:8.3f} s  ({copy / stage:.1%} of the stage)")
    print(f"{'snapshot of staging+marts in a transaction':<44} {snapshot:8.3f} s")


if __name__ == "__main__":
    main()
