"""Helpers for the publish tests: a pipeline, a warehouse with a mart, recorded check runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from duckherd.api import DataPipeline
from duckherd.summary import CheckResult, ChecksSummary, StageSummary
from duckherd_jobs.context import StageContext
from duckherd_jobs.warehouse import connect, record_run
from tests import pipelines

REDIS_ENV = "DUCKHERD_SECRET_CACHE_URL"
POSTGRES_ENV = "DUCKHERD_SECRET_APPDB_DSN"
REDIS_REF = {"name": "cache", "key": "url"}
POSTGRES_REF = {"name": "appdb", "key": "dsn"}


def pipeline(
    publish: list[dict[str, Any]],
    checks: list[dict[str, Any]] | None = None,
    name: str = "shop",
) -> DataPipeline:
    spec: dict[str, Any] = {
        "sources": [{"name": "customers", "file": {"path": "/dev/null", "format": "csv"}}],
        "publish": publish,
    }
    if checks is not None:
        spec["quality"] = {"checks": checks}
    return pipelines.pipeline(name, "analytics", **spec)


def redis_entry(mart: str = "marts.customers", **target: Any) -> dict[str, Any]:
    return {"table": mart, "redis": {"urlSecretRef": REDIS_REF, **target}}


def postgres_entry(mart: str = "marts.customers", **target: Any) -> dict[str, Any]:
    return {"table": mart, "postgres": {"dsnSecretRef": POSTGRES_REF, **target}}


def context(
    warehouse: Path, spec: DataPipeline, env: dict[str, str], run_id: str = "run-1"
) -> StageContext:
    return StageContext(
        pipeline=spec, warehouse=warehouse, run_id=run_id, env=env, lock_timeout_seconds=30
    )


def build_mart(warehouse: Path, select: str, table: str = "marts.customers") -> None:
    """(Re)create a mart table from a SELECT, as the transform stage would."""
    with connect(warehouse) as connection:
        connection.execute(f"CREATE OR REPLACE TABLE {table} AS {select}")


def customers_select(rows: int, generation: int) -> str:
    """`rows` customers, every row tagged with the generation of the data."""
    return f"""
        SELECT i AS customer_id, 'customer ' || i AS name, {generation} AS generation,
               (i * 1.5)::DECIMAL(12, 2) AS revenue
        FROM range({rows}) r(i)
    """


def record_check(
    warehouse: Path,
    run_id: str,
    results: list[tuple[str, str, bool]],
    *,
    ok: bool | None = None,
    finished_at: str = "2026-01-01T00:01:00Z",
    stage: Literal["check", "transform"] = "check",
) -> None:
    """A check stage record in `_duckherd.runs`, as the runner writes it after `check` (or
    a transform's record with the results of the dbt tests it ran)."""
    checks = ChecksSummary(
        passed=sum(success for _, _, success in results),
        failed=sum(not success and severity == "error" for _, severity, success in results),
        warned=sum(not success and severity == "warn" for _, severity, success in results),
        results=[
            CheckResult(name=name, severity=severity, success=success)
            for name, severity, success in results
        ],
    )
    summary = StageSummary(
        stage=stage,
        runId=run_id,
        ok=checks.failed == 0 if ok is None else ok,
        checks=checks,
        startedAt="2026-01-01T00:00:00Z",
        finishedAt=finished_at,
    )
    with connect(warehouse) as connection:
        record_run(connection, summary)


CHECKS = [
    {"table": "marts.customers", "expectation": "expect_column_values_to_not_be_null",
     "kwargs": {"column": "customer_id"}},
]  # fmt: skip
