"""The transform stage: `dbt build` on a copy of the warehouse, swapped in when all of it
succeeded (build_copy.py); results into the stage summary."""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

import duckdb

from duckherd.api import DbtTransform
from duckherd.contract import ENV_DBT_LOG_LEVEL
from duckherd.errors import PipelineError
from duckherd.status import rfc3339
from duckherd.summary import ModelRun, StageSummary, TableSummary
from duckherd_jobs.context import StageContext, utc_now
from duckherd_jobs.fault_points import pause_point
from duckherd_jobs.history import checks_summary, record_checks
from duckherd_jobs.sql import qualified
from duckherd_jobs.transform.build_copy import discard_build, start_build, swap_in
from duckherd_jobs.transform.dbt_tests import dbt_test_records
from duckherd_jobs.transform.invocation import DbtInvocation, DbtNodeResult, DbtOutcome, run_dbt
from duckherd_jobs.transform.project import locate_project
from duckherd_jobs.warehouse import connect

log = logging.getLogger("duckherd.jobs.transform")

# Resource types that build a relation; their status goes into the summary's `models`.
_BUILT_TYPES = frozenset({"model", "seed", "snapshot"})
# Materializations whose row count is cheap to read (a view would be evaluated).
_COUNTED_MATERIALIZATIONS = frozenset({"table", "incremental", "seed", "snapshot"})
_FAILED = frozenset({"error", "fail", "runtime error"})
_MAX_ERRORS_REPORTED = 5
# Beside the warehouse (the PVC in a cluster): manifests parsed by earlier runs.
MANIFEST_CACHE_DIR = ".duckherd-dbt-manifests"
_LOG_LEVELS = ("debug", "info", "warn", "error", "none")


class TransformConfigError(PipelineError, ValueError):
    """spec.transform is missing or unusable."""


class TransformError(PipelineError, RuntimeError):
    """dbt stopped before building anything (a parse, compile or connection error)."""


def run_transform(ctx: StageContext) -> StageSummary:
    """Build the dbt project against the warehouse; a failed node fails the stage."""
    settings = _dbt_settings(ctx)
    log_level = _dbt_log_level(ctx)
    project = locate_project(
        settings.project,
        manifest_dir=ctx.manifest_dir,
        env=ctx.env,
        scratch=Path(tempfile.gettempdir()),
    )
    log.info("dbt project %s", project)
    # The whole stage holds the warehouse's lock (waiting, bounded, for it); dbt builds on a
    # copy that replaces the warehouse only when every node succeeded (build_copy.py).
    with connect(ctx.warehouse, timeout_seconds=ctx.lock_timeout_seconds) as held:
        build = start_build(held, ctx.warehouse, ctx.run_id)
        try:
            pause_point("transform.copied")
            with tempfile.TemporaryDirectory(prefix="duckherd-transform-") as workdir:
                invocation = DbtInvocation(
                    project=project,
                    warehouse=build,
                    workdir=Path(workdir),
                    select=list(settings.select),
                    exclude=list(settings.exclude),
                    vars=dict(settings.vars),
                    full_refresh=settings.fullRefresh,
                    threads=settings.threads,
                    log_level=log_level,
                    manifest_cache=ctx.warehouse.parent / MANIFEST_CACHE_DIR,
                )
                outcome = run_dbt(invocation, lock_timeout_seconds=ctx.lock_timeout_seconds)
            pause_point("transform.built")
            return _keep_or_discard(outcome, ctx, held, build)
        finally:
            discard_build(build)


def _keep_or_discard(
    outcome: DbtOutcome, ctx: StageContext, held: duckdb.DuckDBPyConnection, build: Path
) -> StageSummary:
    """Swap the build in when all of it succeeded; else the warehouse stays as it was."""
    if not outcome.success:
        return _summarize(outcome, ctx, held, built=None)
    with connect(build, timeout_seconds=ctx.lock_timeout_seconds) as built:
        summary = _summarize(outcome, ctx, built, built=built)
        built.execute("CHECKPOINT")  # everything in the file that is renamed
    swap_in(build, ctx.warehouse)
    pause_point("transform.swapped")
    return summary


def _dbt_settings(ctx: StageContext) -> DbtTransform:
    transform = ctx.pipeline.spec.transform
    if transform is None:
        raise TransformConfigError("spec.transform is not set: this pipeline has no dbt stage")
    return transform.dbt


def _dbt_log_level(ctx: StageContext) -> str:
    """dbt's per-node lines belong in a pod's log; on a terminal local mode shows progress."""
    level = ctx.env.get(ENV_DBT_LOG_LEVEL) or ("warn" if sys.stdout.isatty() else "info")
    if level not in _LOG_LEVELS:
        raise TransformConfigError(f"{ENV_DBT_LOG_LEVEL}: use one of {', '.join(_LOG_LEVELS)}")
    return level


def _summarize(
    outcome: DbtOutcome,
    ctx: StageContext,
    checks_into: duckdb.DuckDBPyConnection,
    *,
    built: duckdb.DuckDBPyConnection | None,
) -> StageSummary:
    """The stage's summary; dbt's test results go into `checks_into` (the built copy on
    success, the untouched warehouse on failure), row counts come from `built`."""
    if outcome.error and not outcome.nodes:
        # dbt stopped before running any node (parse / compile / connection error).
        raise TransformError(f"dbt failed: {outcome.error}")
    models = {
        node.name: node.status for node in outcome.nodes if node.resource_type in _BUILT_TYPES
    }
    counted = [node for node in outcome.nodes if _built_table(node)]
    tables = _row_counts(built, counted) if built is not None else {}
    failures = [node for node in outcome.nodes if node.status in _FAILED]
    error = _failure_message(failures, outcome.error) if not outcome.success else None
    tests = dbt_test_records(outcome.nodes, outcome.relations)
    if tests:  # into the run's quality verdict (the check stage reads them back)
        record_checks(checks_into, ctx.run_id, utc_now(), tests)
    return StageSummary(
        stage="transform",
        ok=outcome.success,
        models=models,
        tables=tables,
        checks=checks_summary([test.summary() for test in tests]) if tests else None,
        error=error,
        lineage=model_lineage(outcome),
    )


def model_lineage(outcome: DbtOutcome) -> list[ModelRun]:
    """Each relation the build built (or failed to) and the relations it reads: dbt's
    depends_on, named by the manifest (sources → staging → marts)."""
    return [
        ModelRun(
            name=node.name,
            relation=node.relation,
            status=node.status,
            inputs=sorted(
                {outcome.relations[uid] for uid in node.depends_on if uid in outcome.relations}
            ),
            startedAt=rfc3339(node.started_at) if node.started_at else None,
            finishedAt=rfc3339(node.finished_at) if node.finished_at else None,
        )
        for node in outcome.nodes
        if node.resource_type in _BUILT_TYPES and node.status != "skipped"
    ]


def _built_table(node: DbtNodeResult) -> bool:
    return (
        node.resource_type in _BUILT_TYPES
        and node.status == "success"
        and (node.materialized in _COUNTED_MATERIALIZATIONS or node.resource_type != "model")
    )


def _row_counts(
    connection: duckdb.DuckDBPyConnection, nodes: list[DbtNodeResult]
) -> dict[str, TableSummary]:
    counts: dict[str, TableSummary] = {}
    for node in nodes:
        try:
            row = connection.execute(f"SELECT count(*) FROM {qualified(node.relation)}").fetchone()
        except duckdb.Error as error:  # reported, not fatal: the build itself succeeded
            log.warning("cannot count rows of %s: %s", node.relation, error)
            continue
        rows = int(row[0]) if row else 0
        counts[node.relation] = TableSummary(rows=rows, loaded=rows)
    return counts


def _failure_message(failures: list[DbtNodeResult], error: str | None) -> str:
    parts = [
        f"{node.resource_type} {node.name} {node.status}: {node.message.strip()}"
        for node in failures[:_MAX_ERRORS_REPORTED]
    ]
    if len(failures) > _MAX_ERRORS_REPORTED:
        parts.append(f"... and {len(failures) - _MAX_ERRORS_REPORTED} more")
    if error:
        parts.append(error)
    return (
        "dbt build failed: "
        + ("; ".join(parts) or "no node reported an error")
        + " (nothing of this build was kept: the warehouse is as before the run)"
    )
