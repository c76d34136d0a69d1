"""Helpers for the backup, restore and retention tests: a customers source that moves on, runs
of ingest + dbt, and a table-by-table comparison of two warehouses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from duckherd.api import DataPipeline
from duckherd.summary import StageSummary
from duckherd_jobs.context import StageContext
from duckherd_jobs.runner import run_stage
from tests import pipelines

REPO = Path(__file__).resolve().parents[2]
DBT_PROJECT = REPO / "dbt"
# The mart's months_active counts to this date, so two warehouses built on different days agree.
AS_OF = {"as_of_date": "2026-03-01"}
# The customer models of the default project (it models orders too, which this source lacks).
SELECT = ["+customer_analytics"]
# Columns that differ between two warehouses holding the same data: when a row was loaded.
LOAD_TIME_COLUMNS = ("_loaded_at",)


def customer(number: int, day: int, revenue: float | None = None) -> dict[str, Any]:
    """A record shaped like the demo source's (what the default dbt project models)."""
    return {
        "customer_id": number,
        "name": f"Customer {number}",
        "email": f"c{number}@example.com",
        "country": "DE",
        "segment": "SMB",
        "created_at": f"2025-01-{number % 28 + 1:02d}T00:00:00Z",
        "updated_at": f"2026-01-{day:02d}T{number // 60 % 24:02d}:{number % 60:02d}:00Z",
        "total_revenue": revenue if revenue is not None else round(number * 10.5, 2),
        "orders_count": number % 7 + 1,
        "is_active": number % 5 != 0,
    }


def moved_on(
    records: list[dict[str, Any]], *, updated: int, added: int, day: int
) -> list[dict[str, Any]]:
    """The source a while later: the first `updated` customers changed, `added` new ones."""
    changed = [customer(r["customer_id"], day, r["total_revenue"] + 1) for r in records[:updated]]
    start = max(r["customer_id"] for r in records) + 1
    fresh = [customer(number, day) for number in range(start, start + added)]
    return changed + records[updated:] + fresh


def shop(url: str, *, transform: bool = True, **spec: Any) -> DataPipeline:
    """Customers (merge, incremental by updated_at), through the default dbt project unless
    `transform` is False."""
    source = pipelines.customers_source(url, http={"timeoutSeconds": 5}, **spec.pop("source", {}))
    if transform:
        spec["transform"] = {
            "dbt": {"project": {"path": str(DBT_PROJECT)}, "vars": AS_OF, "select": SELECT}
        }
    return pipelines.pipeline("shop", sources=[source], **spec)


def run(pipeline: DataPipeline, warehouse: Path, run_id: str) -> list[StageSummary]:
    """Ingest then transform, as a run's first two stage Jobs would."""
    ctx = StageContext(
        pipeline=pipeline,
        warehouse=warehouse,
        run_id=run_id,
        manifest_dir=warehouse.parent,
        env={},
        lock_timeout_seconds=60,
    )
    summaries = []
    for stage in pipeline.spec.stages():
        summary = run_stage(stage, ctx)
        summaries.append(summary)
        assert summary.ok, f"{stage}: {summary.error}"
    return summaries


def _relations(connection: duckdb.DuckDBPyConnection, catalog: str) -> list[tuple[str, str]]:
    rows = connection.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ? "
        "UNION SELECT schema_name, view_name FROM duckdb_views() "
        "WHERE database_name = ? AND NOT internal ORDER BY 1, 2",
        [catalog, catalog],
    ).fetchall()
    return [(str(schema), str(name)) for schema, name in rows]


def differences(left: Path, right: Path, *, skip_schemas: tuple[str, ...] = ()) -> dict[str, str]:
    """Table by table (views too): what differs between two warehouses. Rows are compared as
    multisets with every column but the load time; `{}` means equal."""
    connection = duckdb.connect()
    try:
        connection.execute(f"ATTACH '{left}' AS l (READ_ONLY)")
        connection.execute(f"ATTACH '{right}' AS r (READ_ONLY)")
        found: dict[str, str] = {}
        names_l, names_r = _relations(connection, "l"), _relations(connection, "r")
        if names_l != names_r:
            found["(relations)"] = f"{names_l} != {names_r}"
        for schema, name in names_l:
            if schema in skip_schemas or (schema, name) not in names_r:
                continue
            columns = [
                str(row[0])
                for row in connection.execute(f'DESCRIBE l."{schema}"."{name}"').fetchall()
                if str(row[0]) not in LOAD_TIME_COLUMNS
            ]
            listed = ", ".join(f'"{column}"' for column in columns)
            a = f'SELECT {listed} FROM l."{schema}"."{name}"'
            b = f'SELECT {listed} FROM r."{schema}"."{name}"'
            row = connection.execute(
                f"SELECT (SELECT count(*) FROM ({a} EXCEPT ALL {b})), "
                f"(SELECT count(*) FROM ({b} EXCEPT ALL {a})), "
                f"(SELECT count(*) FROM ({a}))"
            ).fetchone()
            assert row is not None
            if row[0] or row[1]:
                found[f"{schema}.{name}"] = f"{row[0]} rows only left, {row[1]} only right"
        return found
    finally:
        connection.close()


def cursors(warehouse: Path) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        return connection.execute(
            "SELECT source, cursor_field, cursor_value, run_id FROM _duckherd.state ORDER BY 1"
        ).fetchall()


def count(warehouse: Path, table: str) -> int:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        row = connection.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0
