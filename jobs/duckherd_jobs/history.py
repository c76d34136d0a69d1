"""The quality history in `_duckherd.checks`: one row per check result, GX checks and dbt tests.

The check stage writes its expectations' results here; the transform stage writes the results of
the dbt tests it ran (expectation `dbt_test`), and the check stage of the same run reads them
back so that both count in one verdict (status.quality, the publish gate). Kept free of Great
Expectations and dbt imports: both stages' pods load it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import duckdb

from duckherd.summary import CheckResult, ChecksSummary

DBT_TEST = "dbt_test"


@dataclass(frozen=True)
class CheckRecord:
    """One row of `_duckherd.checks`."""

    name: str
    table: str
    expectation: str
    severity: Literal["warn", "error"]
    success: bool
    observed: str  # the short text for the summary
    result: dict[str, Any]  # GX's ExpectationValidationResult, JSON form

    def summary(self) -> CheckResult:
        return CheckResult(
            name=self.name, severity=self.severity, success=self.success, observed=self.observed
        )


def record_checks(
    connection: duckdb.DuckDBPyConnection,
    run_id: str,
    checked_at: datetime,
    records: Sequence[CheckRecord],
) -> None:
    """Every result into `_duckherd.checks`, all or none."""
    rows = [
        [
            run_id,
            checked_at,
            record.name,
            record.table,
            record.expectation,
            record.severity,
            record.success,
            json.dumps(record.result["result"].get("observed_value"), default=str),
            json.dumps(record.result, default=str),
        ]
        for record in records
    ]
    connection.execute("BEGIN TRANSACTION")
    try:
        connection.executemany(
            "INSERT INTO _duckherd.checks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
        )
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def dbt_test_results(connection: duckdb.DuckDBPyConnection, run_id: str) -> list[CheckResult]:
    """The dbt tests the transform stage of this run recorded, as check results."""
    rows = connection.execute(
        "SELECT name, severity, success, json_extract_string(result, '$.meta.observed') "
        "FROM _duckherd.checks WHERE run_id = ? AND expectation = ? ORDER BY rowid",
        [run_id, DBT_TEST],
    ).fetchall()
    return [
        CheckResult(name=str(name), severity=severity, success=bool(success), observed=observed)
        for name, severity, success, observed in rows
    ]


def checks_summary(results: Sequence[CheckResult]) -> ChecksSummary:
    """Counts as status.quality shows them: passed, error-severity failed, warn-severity failed."""
    return ChecksSummary(
        passed=sum(r.success for r in results),
        failed=sum(not r.success and r.severity == "error" for r in results),
        warned=sum(not r.success and r.severity == "warn" for r in results),
        results=list(results),
    )


def previous_row_count(
    connection: duckdb.DuckDBPyConnection, table: str, run_id: str
) -> int | None:
    """The row count the latest earlier check run recorded for the table."""
    row = connection.execute(
        "SELECT CAST(json_extract(result, '$.meta.row_count') AS BIGINT) "
        "FROM _duckherd.checks WHERE table_name = ? AND run_id <> ? "
        "AND json_extract(result, '$.meta.row_count') IS NOT NULL "
        "ORDER BY checked_at DESC LIMIT 1",
        [table, run_id],
    ).fetchall()
    return None if not row or row[0][0] is None else int(row[0][0])
