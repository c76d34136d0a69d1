"""The check stage: expectations from the spec, pushed down into DuckDB, recorded as history."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import duckdb
from great_expectations.core import ExpectationValidationResult

from duckherd.errors import PipelineError
from duckherd.summary import CheckResult, ChecksSummary, StageSummary, TableSummary
from duckherd_jobs.check.config import PlannedCheck, plan_checks
from duckherd_jobs.check.drift import (
    DRIFT_EXPECTATIONS,
    KL_DIVERGENCE,
    ColumnProfile,
    load_baseline,
    record_profiles,
    table_profiles,
)
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
from duckherd_jobs.fault_points import pause_point
from duckherd_jobs.history import (
    CheckRecord,
    checks_summary,
    dbt_test_results,
    previous_row_count,
    record_checks,
)
from duckherd_jobs.kpis import compute_kpis, kpi_errors, plan_kpis, record_kpis
from duckherd_jobs.sql import qualified, quote_identifier, table_name
from duckherd_jobs.warehouse import catalog_columns, connect

OBSERVED_MAX_CHARS = 200


class CheckTargetError(PipelineError, LookupError):
    """A check names a table or column the warehouse does not have."""


class CheckComputeError(PipelineError, ValueError):
    """DuckDB refused a check's SQL, typically arguments of the wrong type for the column."""


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


@dataclass(frozen=True)
class TableOutcome:
    row_count: int
    outcomes: list[Outcome]
    profile: dict[str, dict[str, Any]]  # column -> profile (see drift.py)


def _drift_profile(check: PlannedCheck, column: str, data_type: str) -> ColumnProfile:
    profile = ColumnProfile(column, data_type, watched=True)
    if check.check.expectation == KL_DIVERGENCE:
        return replace(profile, categorical=True)
    limits = ("max_mean_change_pct", "max_stddev_change_pct")
    if not profile.numeric and any(check.kwargs.get(limit) is not None for limit in limits):
        raise CheckTargetError(
            f"check {check.name}: column {column!r} is {data_type}; mean and stddev drift "
            "need a numeric column (max_null_fraction_change works on any)"
        )
    return profile


def _resolve_extra(
    connection: duckdb.DuckDBPyConnection,
    check: PlannedCheck,
    columns: Mapping[str, str],
    types: Mapping[str, str],
) -> RelatedKey | ColumnProfile | None:
    """What a referential or drift check needs besides its columns."""
    if check.check.expectation == EXIST_IN_TABLE:
        return resolve_related(connection, check)
    if check.check.expectation in DRIFT_EXPECTATIONS:
        column = columns[str(check.kwargs["column"])]
        return _drift_profile(check, column, types[column])
    return None


def check_table(
    connection: duckdb.DuckDBPyConnection,
    table: str,
    checks: Sequence[PlannedCheck],
    situation: Situation,
) -> TableOutcome:
    """All checks of one table and its profile from one scan."""
    catalog = catalog_columns(connection, table)
    available = {column.lower(): column for column, _ in catalog}
    if not available:
        names = ", ".join(check.name for check in checks)
        raise CheckTargetError(f"table {table} does not exist (checked by: {names})")
    types = dict(catalog)
    resolved = [_resolve_columns(c, available) for c in checks]
    extras = [
        _resolve_extra(connection, c, r, types) for c, r in zip(checks, resolved, strict=True)
    ]
    evaluators = [
        build_evaluator(c.check.expectation, c.kwargs, r, extra)
        for c, r, extra in zip(checks, resolved, extras, strict=True)
    ]
    drifts = [extra for extra in extras if isinstance(extra, ColumnProfile)]
    profiles = table_profiles(
        catalog, {p.name for p in drifts}, {p.name for p in drifts if p.categorical}
    )
    if drifts:
        runs = max(
            int(c.kwargs.get("runs", 5))
            for c in checks
            if c.check.expectation in DRIFT_EXPECTATIONS
        )
        situation = replace(
            situation, baseline=load_baseline(connection, table, situation.run_id, runs)
        )
    relation = qualified(table)
    aggregates = [ROW_COUNT] + [a for e in evaluators for a in e.aggregates()]
    aggregates += [a for p in profiles for a in p.aggregates()]
    try:
        values = scan(connection, relation, aggregates)
        probe = TableProbe(connection, relation, catalog)
        outcomes = [e.evaluate(values, probe, situation) for e in evaluators]
    except duckdb.Error as error:
        raise CheckComputeError(_culprit(connection, relation, checks, evaluators, error)) from None
    profile = {p.name: p.read(values) for p in profiles}
    return TableOutcome(int(values[ROW_COUNT]), outcomes, profile)


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
    """Compute the KPIs (`spec.metrics`, on a read-only connection) and evaluate
    `spec.quality.checks`; a failed `error` check (or dbt test of this run's transform), or a
    KPI that cannot be computed, fails the stage (ok=False)."""
    quality = ctx.pipeline.spec.quality
    planned = plan_checks(quality.checks if quality else [])
    kpis = plan_kpis(ctx.pipeline.spec.metrics)
    if not planned and not kpis:
        return StageSummary(stage="check", ok=True, checks=ChecksSummary())
    computed_at = utc_now()
    kpi_results = compute_kpis(ctx.warehouse, kpis, timeout_seconds=ctx.lock_timeout_seconds)
    with connect(ctx.warehouse, timeout_seconds=ctx.lock_timeout_seconds) as connection:
        connection.execute("SET enable_progress_bar = false")  # pod logs end with the summary
        summary = (
            _check(connection, ctx, planned) if planned else StageSummary(stage="check", ok=True)
        )
        record_kpis(connection, ctx.run_id, computed_at, kpis, kpi_results)
    summary.kpis = kpi_results
    kpi_error = kpi_errors(kpi_results)
    if kpi_error:
        summary.ok = False
        summary.error = "; ".join(e for e in (summary.error, kpi_error) if e)
    return summary


def _check(
    connection: duckdb.DuckDBPyConnection, ctx: StageContext, planned: Sequence[PlannedCheck]
) -> StageSummary:
    """Every check, one scan per table; results and profiles recorded."""
    by_table: dict[str, list[PlannedCheck]] = defaultdict(list)
    for check in planned:
        by_table[check.table].append(check)
    checked_at = utc_now()
    outcomes: dict[int, Outcome] = {}
    row_counts: dict[str, int] = {}
    profiles: dict[str, tuple[int, dict[str, dict[str, Any]]]] = {}
    for table, checks in by_table.items():
        situation = Situation(
            checked_at, previous_row_count(connection, table, ctx.run_id), ctx.run_id
        )
        found = check_table(connection, table, checks, situation)
        row_counts[table] = found.row_count
        profiles[table] = (found.row_count, found.profile)
        outcomes.update(zip((c.position for c in checks), found.outcomes, strict=True))
    records = [
        check_record(check, outcomes[check.position], row_counts[check.table]) for check in planned
    ]
    summary = _summarize(records, dbt_test_results(connection, ctx.run_id), row_counts)
    pause_point("check.evaluated")
    record_checks(connection, ctx.run_id, checked_at, records)
    record_profiles(connection, ctx.run_id, checked_at, summary.ok, profiles)
    return summary
