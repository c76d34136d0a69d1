"""Shared setup of the check stage tests: a real warehouse file and pipelines around checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from duckherd.api import DataPipeline
from duckherd.summary import StageSummary
from duckherd_jobs.check import run_check
from duckherd_jobs.context import StageContext
from duckherd_jobs.runner import run_stage
from tests import pipelines

# 200 customers, deterministic; a few nulls, duplicates and out-of-range values on purpose.
CUSTOMERS_SQL = """
CREATE SCHEMA IF NOT EXISTS marts;
CREATE OR REPLACE TABLE marts.customers AS
SELECT
    CASE WHEN i IN (7, 8) THEN 5 ELSE i END AS customer_id,
    CASE WHEN i % 50 = 0 THEN NULL ELSE 'user' || i || '@example.com' END AS email,
    CASE WHEN i % 97 = 0 THEN 'Bad Address' ELSE 'user' || i || '@example.com' END AS contact,
    CASE WHEN i % 40 = 3 THEN -10.5 WHEN i % 33 = 0 THEN NULL ELSE i * 12.25 END AS revenue,
    CASE WHEN i % 45 = 0 THEN 'unknown' WHEN i % 70 = 0 THEN NULL
        ELSE (['active', 'churned', 'trial'])[1 + i % 3] END AS status,
    i % 5 AS segment,
    CASE WHEN i % 60 = 0 THEN NULL ELSE i % 3 END AS region,
    TIMESTAMP '2024-01-01 00:00:00' + INTERVAL (i) HOUR AS updated_at,
    i AS months_active
FROM range(1, 201) AS t(i);
"""

# The columns of CUSTOMERS_SQL, in table order.
COLUMNS = [
    "customer_id",
    "email",
    "contact",
    "revenue",
    "status",
    "segment",
    "region",
    "updated_at",
    "months_active",
]


def make_warehouse(path: Path, sql: str = CUSTOMERS_SQL) -> Path:
    with duckdb.connect(str(path)) as connection:
        connection.execute(sql)
    return path


def pipeline(checks: list[dict[str, Any]]) -> DataPipeline:
    return pipelines.pipeline(
        "shop",
        "default",
        sources=[{"name": "customers", "file": {"path": "x.csv", "format": "csv"}}],
        quality={"checks": checks},
    )


def context(warehouse: Path, checks: list[dict[str, Any]], run_id: str = "run-1") -> StageContext:
    return StageContext(
        pipeline=pipeline(checks), warehouse=warehouse, run_id=run_id, lock_timeout_seconds=30
    )


def check(warehouse: Path, checks: list[dict[str, Any]], run_id: str = "run-1") -> StageSummary:
    """The stage function itself (raises on bad input)."""
    return run_check(context(warehouse, checks, run_id))


def check_stage(
    warehouse: Path, checks: list[dict[str, Any]], run_id: str = "run-1"
) -> StageSummary:
    """Through the runner, as a pod runs it (never raises)."""
    return run_stage("check", context(warehouse, checks, run_id))


def query(warehouse: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        return [tuple(row) for row in connection.execute(sql, params or []).fetchall()]
