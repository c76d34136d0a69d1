"""The check stage: expectations from the spec, pushed down into DuckDB, recorded as history."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import duckdb
from great_expectations.core import ExpectationValidationResult

from duckherd.errors import PipelineError
from duckherd.summary import CheckResult, ChecksSummary, StageSummary, TableSummary
from duckherd_jobs.check.config import PlannedCheck, plan_checks
from duckherd_jobs.check.evaluators import build_evaluator, referenced_columns
from duckherd_jobs.check.pushdown import (
    ROW_COUNT,
    Evaluator,
    Outcome,
    Situation,
    TableProbe,
    scan,
)
from duckherd_jobs.check.referential import EXIST_IN_TABLE, RelatedKey, key_columns
from duckherd_jobs.context import StageContext, utc_now
from duckherd_jobs.history import (
    CheckRecord,
    checks_summary,
    dbt_test_results,
    previous_row_count,
    record_checks,
)
from duckherd_jobs.sql import qualified, quote_identifier, table_name
from duckherd_jobs.warehouse import connect

OBSERVED_MAX_CHARS = 200


class CheckTargetError(PipelineError, LookupError):
    """A check names a table or column the warehouse does not have."""


class CheckComputeError(PipelineError, ValueError):
    """DuckDB refused a check's SQL, typically arguments of the wrong type for the column."""


def catalog_columns(connection: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    """(name, DuckDB type) of each column in table order; [] if there is no such table."""
    schema, _, name = table.partition(".")
    rows = connection.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_catalog = current_database() AND table_schema = ? AND table_name = ? "
        "ORDER BY ordinal_position",
        [schema, name],
    ).fetchall()
    return [(str(row[0]), str(row[1])) for row in rows]


def _resolve_columns(check: PlannedCheck, available: dict[str, str]) -> dict[str, str]:
    resolved = {}
    for name in referenced_columns(check.check.expectation, check.kwargs):
        if name.lower() not in available:
            known = ", ".join(list(available.values())[:30])
            raise CheckTargetError(
                f"check {check.name}: column {name!r} does not exist in table {check.table} "
                f"(columns: {known})"
            )
        resolved[name] = available[name.lower()]
    return resolved


def resolve_related(connection: duckdb.DuckDBPyConnection, check: PlannedCheck) -> RelatedKey:
    """The parent table and key columns of a referential check, as the catalog names them."""
    table = table_name(str(check.kwargs["to_table"]))
    available = {name.lower(): name for name, _ in catalog_columns(connection, table)}
    if not available:
        raise CheckTargetError(f"check {check.name}: related table {table} does not exist")
    names = []
    for name in key_columns(check.kwargs)[1]:
        if name.lower() not in available:
            raise CheckTargetError(
                f"check {check.name}: column {name!r} does not exist in related table {table}"
            )
        names.append(available[name.lower()])
    return RelatedKey(
        table=table,
        relation=qualified(table),
        columns=tuple(quote_identifier(name) for name in names),
        names=tuple(names),
    )


def check_table(
    connection: duckdb.DuckDBPyConnection,
    table: str,
    checks: Sequence[PlannedCheck],
    situation: Situation,
) -> tuple[int, list[Outcome]]:
    """All checks of one table from one scan; returns the row count and each check's outcome."""
    catalog = catalog_columns(connection, table)
    available = {column.lower(): column for column, _ in catalog}
    if not available:
        names = ", ".join(check.name for check in checks)
        raise CheckTargetError(f"table {table} does not exist (checked by: {names})")
    evaluators = [
        build_evaluator(
            c.check.expectation,
            c.kwargs,
            _resolve_columns(c, available),
            resolve_related(connection, c) if c.check.expectation == EXIST_IN_TABLE else None,
        )
        for c in checks
    ]
    relation = qualified(table)
    aggregates = [ROW_COUNT] + [a for e in evaluators for a in e.aggregates()]
    try:
        values = scan(connection, relation, aggregates)
        probe = TableProbe(connection, relation, catalog)
        outcomes = [e.evaluate(values, probe, situation) for e in evaluators]
    except duckdb.Error as error:
        raise CheckComputeError(_culprit(connection, relation, checks, evaluators, error)) from None
    return int(values[ROW_COUNT]), outcomes


def _culprit(
    connection: duckdb.DuckDBPyConnection,
    relation: str,
    checks: Sequence[PlannedCheck],
    evaluators: Sequence[Evaluator],
    error: duckdb.Error,
) -> str:
    """Name the check whose SQL DuckDB refuses (the shared scan only says that one did)."""
    for check, evaluator in zip(checks, evaluators, strict=True):
        try:
            scan(connection, relation, evaluator.aggregates())
        except duckdb.Error as own_error:
            return f"check {check.name} on {check.table}: {own_error}"
    return f"checks on {checks[0].table}: {error}"


def check_record(check: PlannedCheck, outcome: Outcome, row_count: int) -> CheckRecord:
    """The check's history row; its result is a GX ExpectationValidationResult (JSON form)."""
    result = ExpectationValidationResult(
        success=outcome.success,
        expectation_config=check.configuration,
        result=outcome.result,
        meta={"name": check.name, "severity": check.check.severity, "row_count": row_count},
    )
    return CheckRecord(
        name=check.name,
        table=check.table,
        expectation=check.check.expectation,
        severity=check.check.severity,
        success=outcome.success,
        observed=outcome.observed[:OBSERVED_MAX_CHARS],
        result=dict(result.to_json_dict()),
    )


def _summarize(
    records: Sequence[CheckRecord], dbt_tests: Sequence[CheckResult], row_counts: dict[str, int]
) -> StageSummary:
    """One verdict over this stage's expectations and the dbt tests of the run's transform."""
    summary = checks_summary([record.summary() for record in records] + list(dbt_tests))
    failed = [r for r in summary.results if not r.success and r.severity == "error"]
    error = None
    if failed:
        listed = "; ".join(f"{r.name} ({r.observed})" for r in failed)
        error = f"{len(failed)} error-severity check(s) failed: {listed}"
    return StageSummary(
        stage="check",
        ok=not failed,
        checks=summary,
        tables={table: TableSummary(rows=rows) for table, rows in row_counts.items()},
        error=error,
    )


def run_check(ctx: StageContext) -> StageSummary:
    """Evaluate `spec.quality.checks`; a failed `error` check (or dbt test of this run's
    transform) fails the stage (ok=False)."""
    quality = ctx.pipeline.spec.quality
    planned = plan_checks(quality.checks if quality else [])
    if not planned:
        return StageSummary(stage="check", ok=True, checks=ChecksSummary())
    by_table: dict[str, list[PlannedCheck]] = defaultdict(list)
    for check in planned:
        by_table[check.table].append(check)
    checked_at = utc_now()
    outcomes: dict[int, Outcome] = {}
    row_counts: dict[str, int] = {}
    with connect(ctx.warehouse, timeout_seconds=ctx.lock_timeout_seconds) as connection:
        connection.execute("SET enable_progress_bar = false")  # pod logs end with the summary
        for table, checks in by_table.items():
            situation = Situation(checked_at, previous_row_count(connection, table, ctx.run_id))
            row_counts[table], table_outcomes = check_table(connection, table, checks, situation)
            outcomes.update(zip((c.position for c in checks), table_outcomes, strict=True))
        records = [
            check_record(check, outcomes[check.position], row_counts[check.table])
            for check in planned
        ]
        dbt_tests = dbt_test_results(connection, ctx.run_id)
        record_checks(connection, ctx.run_id, checked_at, records)
    return _summarize(records, dbt_tests, row_counts)
