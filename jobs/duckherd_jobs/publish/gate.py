"""The quality gate: publish only data whose checks passed.

The decision reads `_duckherd.runs`: the latest check stage of this run, or, when this run
had none (a publish triggered by hand), the latest check stage of any run. A pipeline that
declares no checks publishes freely; one that declares checks but never ran them does not.
Only `error`-severity failures (or a check stage that failed outright) close the gate;
`warn` failures are reported by the check stage and let publishing go ahead. dbt tests count
the same way: the check stage folds the run's dbt test results into its verdict, and the latest
transform's error-severity dbt test failures close the gate even where no check stage ran.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
from pydantic import ValidationError

from duckherd.summary import StageSummary
from duckherd.validation import describe_validation_errors
from duckherd_jobs.context import StageContext

_RUNS_TABLE_EXISTS = """
SELECT count(*) FROM duckdb_tables() WHERE schema_name = '_duckherd' AND table_name = 'runs'
"""
_LATEST_OF_RUN = """
SELECT run_id, summary FROM _duckherd.runs WHERE stage = ? AND run_id = ?
ORDER BY finished_at DESC NULLS LAST, started_at DESC NULLS LAST LIMIT 1
"""
_LATEST = """
SELECT run_id, summary FROM _duckherd.runs WHERE stage = ?
ORDER BY finished_at DESC NULLS LAST, started_at DESC NULLS LAST LIMIT 1
"""


@dataclass(frozen=True)
class GateDecision:
    open: bool
    reason: str


def evaluate_gate(connection: duckdb.DuckDBPyConnection, ctx: StageContext) -> GateDecision:
    dbt_tests = _failed_dbt_tests(connection, ctx.run_id)
    if dbt_tests is not None:
        return dbt_tests
    quality = ctx.pipeline.spec.quality
    if quality is None or not quality.checks:
        return GateDecision(True, "the pipeline declares no checks")
    record = _latest_record(connection, "check", ctx.run_id)
    if record is None:
        return GateDecision(
            False,
            "publish blocked: the pipeline declares checks but no check stage has run yet",
        )
    run_id, summary = record
    return _decide(run_id, summary, same_run=run_id == ctx.run_id)


def _failed_dbt_tests(connection: duckdb.DuckDBPyConnection, run_id: str) -> GateDecision | None:
    """The marts come from the latest transform (this run's, else the latest): dbt tests it ran
    that failed at error severity close the gate, as failed error checks do."""
    record = _latest_record(connection, "transform", run_id)
    if record is None or record[1].checks is None:
        return None
    failed = [r.name for r in record[1].checks.results if not r.success and r.severity == "error"]
    if not failed:
        return None
    whose = "this run's" if record[0] == run_id else f"the latest (run {record[0]})"
    return GateDecision(
        False,
        f"publish blocked: {whose} transform failed error-severity dbt tests: " + ", ".join(failed),
    )


def _latest_record(
    connection: duckdb.DuckDBPyConnection, stage: str, run_id: str
) -> tuple[str, StageSummary] | None:
    """The stage's record of this run, else its latest record of any run."""
    # DuckDB 2 wants every result consumed before the next statement: fetchall, not fetchone.
    if not connection.execute(_RUNS_TABLE_EXISTS).fetchall()[0][0]:
        return None
    rows = connection.execute(_LATEST_OF_RUN, [stage, run_id]).fetchall()
    rows = rows or connection.execute(_LATEST, [stage]).fetchall()
    if not rows:
        return None
    row = rows[0]
    try:
        return str(row[0]), StageSummary.model_validate_json(row[1])
    except ValidationError as error:
        raise ValueError(
            f"_duckherd.runs: the {stage} record of run {row[0]} is not a stage summary: "
            + describe_validation_errors(error.errors())
        ) from error


def _decide(run_id: str, summary: StageSummary, *, same_run: bool) -> GateDecision:
    whose = "this run's check stage" if same_run else f"the latest check stage (run {run_id})"
    failed = [
        result.name
        for result in (summary.checks.results if summary.checks else [])
        if result.severity == "error" and not result.success
    ]
    if failed:
        return GateDecision(
            False,
            f"publish blocked: {whose} failed error-severity checks: {', '.join(failed)}",
        )
    if summary.checks and summary.checks.failed:
        return GateDecision(
            False, f"publish blocked: {whose} failed {summary.checks.failed} error-severity checks"
        )
    if not summary.ok:
        return GateDecision(
            False, f"publish blocked: {whose} failed: {summary.error or 'no error recorded'}"
        )
    return GateDecision(True, f"{whose} passed")
