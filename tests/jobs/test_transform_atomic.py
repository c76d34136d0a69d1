"""Whole-run atomicity of the transform stage, with real dbt-duckdb on a real DuckDB file.

The project is the example's plus three marts: `customer_counts` (a table), an incremental
`customer_changes` and `customer_checks`, the model that fails when the test breaks it. It runs
after both (it selects from them), so when it fails its siblings have already succeeded in
the same run: with dbt's per-model commits they would stay; the stage must keep none of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from duckherd_jobs.fault_points import ENV_PAUSE_AT, ENV_PAUSE_DIR
from duckherd_jobs.runner import run_stage
from duckherd_jobs.transform.build_copy import build_path, leftover_builds
from tests.jobs.test_transform import AS_OF, CUSTOMERS, context, copy_project, load_raw

COUNTS = """
{{ config(materialized='table') }}
select country, count(*) as customers, sum(total_revenue) as revenue
from {{ ref('customer_analytics') }} group by country
"""
CHANGES = """
{{ config(materialized='incremental', unique_key='customer_id') }}
select customer_id, updated_at, total_revenue from {{ ref('stg_salesforce__customers') }}
{% if is_incremental() %}
where updated_at > (select max(updated_at) from {{ this }})
{% endif %}
"""
CHECKS = """
{{ config(materialized='table') }}
select c.country, c.customers, (select count(*) from {{ ref('customer_changes') }}) as changed
from {{ ref('customer_counts') }} as c
"""
# A runtime error (not a compile error): dbt has built the siblings when this one fails.
BROKEN = CHECKS.replace("as changed", "as changed, cast('not a number' as integer) as broken")

USER_SCHEMAS = ("raw", "staging", "marts", "_duckherd")


def project_with_three_marts(tmp_path: Path) -> Path:
    project = copy_project(tmp_path)
    marts = project / "models" / "marts"
    (marts / "customer_counts.sql").write_text(COUNTS)
    (marts / "customer_changes.sql").write_text(CHANGES)
    (marts / "customer_checks.sql").write_text(CHECKS)
    return project


def break_third_mart(project: Path) -> None:
    (project / "models" / "marts" / "customer_checks.sql").write_text(BROKEN)


def customer(customer_id: int, updated_at: str, revenue: float) -> tuple[Any, ...]:
    name, email, created_at = f"C{customer_id}", f"c{customer_id}@example.com", CUSTOMERS[0][3]
    return (customer_id, name, email, created_at, updated_at, revenue, 1, True)


def warehouse_contents(warehouse: Path) -> dict[str, Any]:
    """Every relation outside `_duckherd`: its kind, column types, and all rows in order."""
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        relations = connection.execute(
            "SELECT schema_name, table_name, 'table' FROM duckdb_tables() "
            "WHERE schema_name IN ('raw', 'staging', 'marts') UNION ALL "
            "SELECT schema_name, view_name, 'view: ' || sql FROM duckdb_views() "
            "WHERE schema_name IN ('raw', 'staging', 'marts') ORDER BY 1, 2"
        ).fetchall()
        contents: dict[str, Any] = {}
        for schema, name, kind in relations:
            relation = f'"{schema}"."{name}"'
            types = connection.execute(f"DESCRIBE {relation}").fetchall()
            rows = connection.execute(f"SELECT * FROM {relation} ORDER BY ALL").fetchall()
            contents[f"{schema}.{name}"] = (kind, types, rows)
        return contents


def test_a_run_whose_third_mart_fails_leaves_every_mart_as_before(tmp_path: Path) -> None:
    project = project_with_three_marts(tmp_path)
    ctx = context(tmp_path, {"project": {"path": str(project)}, "vars": AS_OF})
    load_raw(ctx.warehouse)
    first = run_stage("transform", ctx)
    assert first.ok, first.error
    before = warehouse_contents(ctx.warehouse)
    assert set(before) >= {
        "marts.customer_analytics",
        "marts.customer_counts",
        "marts.customer_changes",
        "marts.customer_checks",
    }
    # New data that every mart would reflect, and a third mart that now fails at run time.
    load_raw(ctx.warehouse, [*CUSTOMERS, customer(4, "2024-12-30T00:00:00Z", 999.0)])
    break_third_mart(project)
    raw_before_failure = warehouse_contents(ctx.warehouse)

    failed = run_stage("transform", ctx)

    assert not failed.ok
    # Its siblings DID build in this run: dbt's own rule would have kept them.
    assert failed.models["customer_analytics"] == "success"
    assert failed.models["customer_counts"] == "success"
    assert failed.models["customer_changes"] == "success"
    assert failed.models["customer_checks"] == "error"
    assert failed.error is not None and "as before the run" in failed.error
    assert failed.tables == {}  # nothing this run wrote was kept
    after = warehouse_contents(ctx.warehouse)
    assert after.keys() == raw_before_failure.keys()
    for relation, contents in raw_before_failure.items():  # table by table
        assert after[relation] == contents, relation
    for relation, (kind, types, rows) in before.items():  # the marts of the last success
        if relation.startswith("marts."):
            assert after[relation] == (kind, types, rows), relation
    assert leftover_builds(ctx.warehouse) == []


def test_a_successful_run_replaces_every_mart_and_leaves_no_copy(tmp_path: Path) -> None:
    project = project_with_three_marts(tmp_path)
    ctx = context(tmp_path, {"project": {"path": str(project)}, "vars": AS_OF})
    load_raw(ctx.warehouse)
    assert run_stage("transform", ctx).ok
    load_raw(ctx.warehouse, [*CUSTOMERS, customer(4, "2024-12-30T00:00:00Z", 999.0)])

    summary = run_stage("transform", ctx)

    assert summary.ok, summary.error
    assert summary.tables["marts.customer_analytics"].rows == 4
    assert summary.tables["marts.customer_checks"].rows == 1
    contents = warehouse_contents(ctx.warehouse)
    assert contents["marts.customer_counts"][2] == [("DE", 4, 2759.0)]
    assert leftover_builds(ctx.warehouse) == []
    with duckdb.connect(str(ctx.warehouse), read_only=True) as connection:
        runs = connection.execute(
            "SELECT stage, ok FROM _duckherd.runs ORDER BY finished_at"
        ).fetchall()
    assert runs == [("transform", True), ("transform", True)]


def test_an_incremental_model_resumes_from_the_last_successful_run(tmp_path: Path) -> None:
    project = project_with_three_marts(tmp_path)
    ctx = context(tmp_path, {"project": {"path": str(project)}, "vars": AS_OF})
    rows = list(CUSTOMERS)
    load_raw(ctx.warehouse, rows)
    assert run_stage("transform", ctx).ok

    def changes() -> list[tuple[Any, ...]]:
        with duckdb.connect(str(ctx.warehouse), read_only=True) as connection:
            return connection.execute(
                "SELECT customer_id, total_revenue FROM marts.customer_changes ORDER BY 1"
            ).fetchall()

    assert [c for c, _ in changes()] == [1, 2, 3]
    # A failed run: customer 4 arrives and customer 1 changes, but nothing is kept.
    rows = [customer(1, "2024-12-29T00:00:00Z", 1300.0), *rows[1:], customer(4, "2024-12-30", 9)]
    load_raw(ctx.warehouse, rows)
    break_third_mart(project)
    assert not run_stage("transform", ctx).ok
    assert changes() == [(1, 1200), (2, 80), (3, 480)]
    # The next successful run picks up both changes from where the last success left off.
    (project / "models" / "marts" / "customer_checks.sql").write_text(CHECKS)
    rows.append(customer(5, "2024-12-31T00:00:00Z", 5.0))
    load_raw(ctx.warehouse, rows)

    assert run_stage("transform", ctx).ok
    assert changes() == [(1, 1300), (2, 80), (3, 480), (4, 9), (5, 5)]


def test_a_copy_left_by_a_killed_transform_is_removed_by_the_next(tmp_path: Path) -> None:
    ctx = context(tmp_path, {"vars": AS_OF})
    load_raw(ctx.warehouse)
    stale = build_path(ctx.warehouse, "20240101t000000-dead00")
    stale.write_bytes(b"half a database")
    stale.with_name(stale.name + ".wal").write_bytes(b"half a log")

    assert run_stage("transform", ctx).ok
    assert leftover_builds(ctx.warehouse) == []


def test_the_warehouse_stays_locked_while_dbt_builds_on_the_copy(tmp_path: Path) -> None:
    """DuckDB's lock is a POSIX record lock, dropped when the process closes ANY descriptor
    of the file: copying it in the stage's own process would open the warehouse to writers
    for the whole dbt build. The real stage, stopped right after the copy, still holds it."""
    ctx = context(tmp_path, {"vars": AS_OF})
    load_raw(ctx.warehouse)
    spec = tmp_path / "pipeline.yaml"
    manifest = ctx.pipeline.model_dump(mode="json", exclude_none=True, by_alias=True)
    spec.write_text(yaml.safe_dump(manifest))
    pauses = tmp_path / "pauses"
    pauses.mkdir()
    stage = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "duckherd"),
            "job",
            "transform",
            f"--spec={spec}",
            f"--warehouse={ctx.warehouse}",
            f"--termination-log={tmp_path / 'termination-log'}",
        ],
        env={**os.environ, ENV_PAUSE_AT: "transform.copied", ENV_PAUSE_DIR: str(pauses)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not (pauses / "transform.copied.paused").exists():
            assert stage.poll() is None, "the stage ended before the pause point"
            assert time.monotonic() < deadline, "the stage never reached the pause point"
            time.sleep(0.05)
        with pytest.raises(duckdb.IOException, match="lock"):
            duckdb.connect(str(ctx.warehouse)).close()
        (pauses / "transform.copied.release").touch()
        assert stage.wait(timeout=300) == 0
    finally:
        if stage.poll() is None:
            stage.kill()
            stage.wait()
