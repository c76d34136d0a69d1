"""Pure status logic: stage summaries and observations in, `DataPipelineStatus` out.

Shared by the operator (which observes Jobs and Pods) and local mode (which runs stages in
process): both describe a run as a list of `StageObservation`s and get the same status, so
`duckherd run` prints what `kubectl get datapipelines -o wide` would show.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from duckherd.api import (
    CheckFailure,
    Condition,
    DataPipelineSpec,
    DataPipelineStatus,
    FreshnessStatus,
    KpiStatus,
    PublishedStatus,
    QualityStatus,
    RetentionStatus,
    RunStatus,
    Stage,
    StageResult,
    TableStatus,
    WarehouseStatus,
    parse_duration,
)
from duckherd.contract import MARTS_SCHEMA, RAW_SCHEMA
from duckherd.summary import StageSummary

# Deployment health (docs/status.md): did the operator accept and act on this generation?
# Read by kstatus (Flux, `kubectl wait`, cli-utils) and Argo CD.
READY = "Ready"
STALLED = "Stalled"  # present only while True (Flux's abnormal-true convention)
RECONCILING = "Reconciling"  # present only while True
# Data health: did the last run succeed, is the data fresh, did the checks pass, was it published?
DATA_READY = "DataReady"
FRESH = "Fresh"
CHECKS_PASSED = "ChecksPassed"
SUSPENDED = "Suspended"
PUBLISHED = "Published"

# DataReady=False reasons that mean "the last finished run went wrong" (they hold while a
# new run is in progress, until a run succeeds).
RUN_FAILURE_REASONS = ("RunFailed", "ChecksFailed", "PublishBlocked", "PublishFailed")
# DataReady=False reasons that are no fault: nothing has run yet.
NOT_YET_REASONS = ("AwaitingFirstRun", "FirstRunInProgress")
# A Problem the operator finds only while applying children; other syncs carry it forward.
CHILD_REJECTED = "ChildRejected"


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --------------------------------------------------------------------------- conditions


def set_condition(
    conditions: Sequence[Condition],
    *,
    type: str,
    status: str,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """Upsert a condition; `lastTransitionTime` moves only when `status` flips."""
    previous = get_condition(conditions, type)
    if previous is not None and previous.status == status:
        transition = previous.lastTransitionTime
    else:
        transition = rfc3339(now)
    updated = Condition(
        type=type,
        status=status,
        reason=reason,
        message=message,
        observedGeneration=generation,
        lastTransitionTime=transition,
    )
    if previous is None:
        return [*conditions, updated]
    return [updated if condition.type == type else condition for condition in conditions]


def get_condition(conditions: Iterable[Condition], type: str) -> Condition | None:
    return next((c for c in conditions if c.type == type), None)


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class StageObservation:
    """What is known about one stage Job of a run."""

    stage: Stage
    job: str | None
    state: str  # Pending | Waiting | Running | Succeeded | Failed
    start_time: str | None = None
    completion_time: str | None = None
    summary: StageSummary | None = None
    message: str | None = None


@dataclass(frozen=True)
class RunObservation:
    run_id: str
    trigger: str  # Schedule | Manual
    stages: tuple[StageObservation, ...]


def _stage_rows(summary: StageSummary | None) -> int | None:
    if summary is None:
        return None
    if summary.stage == "publish":
        # Rows per published table (a table sent to two targets counts once).
        per_table = {p.table: p.rows for p in summary.published}
        return sum(per_table.values()) if per_table else None
    if summary.stage == "check":
        return None
    loaded = [t.loaded if t.loaded is not None else t.rows for t in summary.tables.values()]
    return sum(loaded) if loaded else None


def _stage_result(observation: StageObservation) -> StageResult:
    state = observation.state
    message = observation.message
    summary = observation.summary
    if summary is not None:
        if summary.blocked:
            state = "Blocked"
        elif state == "Succeeded" and not summary.ok:
            state = "Failed"
        if summary.error and not message:
            message = summary.error
    if summary is not None and summary.checks is not None and not message:
        checks = summary.checks
        message = f"{checks.passed} passed, {checks.failed} failed, {checks.warned} warned"
    duration = summary.durationSeconds if summary is not None else None
    resources = summary.resources if summary is not None else None
    lineage = summary.lineageEvents if summary is not None else None
    return StageResult(
        stage=observation.stage,
        job=observation.job,
        result=state,
        startTime=observation.start_time,
        completionTime=observation.completion_time,
        durationSeconds=duration,
        rows=_stage_rows(summary),
        peakMemoryBytes=resources.peakMemoryBytes if resources else None,
        cpuSeconds=resources.cpuSeconds if resources else None,
        lineageEvents=lineage.sent if lineage else None,
        lineageError=lineage.error if lineage else None,
        message=(message[:1000] if message else None),
    )


def _block_publish_after_failed_checks(run: RunObservation, results: list[StageResult]) -> None:
    """Publish never starts after error-severity check failures: show it as Blocked."""
    check = next((s for s in run.stages if s.stage == "check"), None)
    if check is None or check.summary is None or check.summary.checks is None:
        return
    if check.summary.checks.failed == 0:
        return
    failed = [
        r.name for r in check.summary.checks.results if not r.success and r.severity == "error"
    ]
    for index, result in enumerate(results):
        if result.stage == "publish" and result.result == "Pending":
            results[index] = result.model_copy(
                update={
                    "result": "Blocked",
                    "message": "blocked by failed checks: " + (", ".join(failed) or "see quality"),
                }
            )


def run_status(run: RunObservation, planned: Sequence[Stage]) -> RunStatus:
    """The run's result: Running until its last planned stage ends or a stage fails."""
    results = [_stage_result(s) for s in run.stages]
    seen = {r.stage for r in results}
    first_seen = min((planned.index(s) for s in seen if s in planned), default=0)
    for stage in planned[first_seen:]:
        if stage not in seen:
            results.append(StageResult(stage=stage, result="Pending"))
    _block_publish_after_failed_checks(run, results)
    outcome: str = "Running"
    if any(r.result == "Failed" for r in results):
        outcome = "Failed"
    elif any(r.result == "Blocked" for r in results):
        outcome = "Blocked"
    elif results and all(r.result == "Succeeded" for r in results):
        outcome = "Succeeded"
    starts = [r.startTime for r in results if r.startTime]
    ends = [r.completionTime for r in results if r.completionTime]
    return RunStatus(
        id=run.run_id,
        trigger=run.trigger,
        result=outcome,
        startTime=min(starts) if starts else None,
        completionTime=max(ends) if ends and outcome != "Running" else None,
        stages=results,
    )


# --------------------------------------------------------------------------- whole status


def final_rows(spec: DataPipelineSpec, tables: Sequence[TableStatus]) -> int | None:
    """Rows in the pipeline's final tables: the marts when it has a transform, else the raw
    tables ingest writes. None until one exists. (Adding raw and marts together would count
    the same records twice.)"""
    schema = MARTS_SCHEMA if spec.transform is not None else RAW_SCHEMA
    final = [t.rows for t in tables if t.name.partition(".")[0] == schema]
    return sum(final) if final else None


def _merge_tables(previous: Sequence[TableStatus], run: RunObservation) -> list[TableStatus]:
    tables = {t.name: t for t in previous}
    for observation in run.stages:
        summary = observation.summary
        if summary is None or not summary.ok:
            continue
        for name, table in summary.tables.items():
            tables[name] = TableStatus(
                name=name, rows=table.rows, loadedAt=table.loadedAt or summary.finishedAt
            )
    return sorted(tables.values(), key=lambda t: t.name)


def _last_loaded_at(run: RunObservation, previous: str | None) -> str | None:
    for observation in run.stages:
        summary = observation.summary
        if observation.stage == "ingest" and summary is not None and summary.ok:
            stamps = [t.loadedAt for t in summary.tables.values() if t.loadedAt]
            candidate = max(stamps) if stamps else summary.finishedAt
            if candidate and (previous is None or candidate > previous):
                return candidate
    return previous


def freshness_state(spec: DataPipelineSpec, last_loaded_at: str | None, now: datetime) -> str:
    loaded = parse_time(last_loaded_at)
    if loaded is None:
        return "Unknown"
    age = now - loaded
    freshness = spec.freshness
    if (
        freshness is not None
        and freshness.errorAfter
        and age > parse_duration(freshness.errorAfter)
    ):
        return "Stale"
    if freshness is not None and freshness.warnAfter and age > parse_duration(freshness.warnAfter):
        return "Warn"
    return "Fresh"


def _quality(run: RunObservation, previous: QualityStatus | None) -> QualityStatus | None:
    """The check stage's verdict (which counts the run's dbt tests too); before or without a
    check stage, the dbt tests the transform stage ran."""
    candidates = sorted(
        (o for o in run.stages if o.stage in ("check", "transform")),
        key=lambda o: o.stage != "check",
    )
    for observation in candidates:
        summary = observation.summary
        if summary is not None and summary.checks is not None:
            checks = summary.checks
            return QualityStatus(
                passed=checks.passed,
                failed=checks.failed,
                warned=checks.warned,
                checkedAt=summary.finishedAt,
                runId=run.run_id,
                failures=[
                    CheckFailure(name=r.name, severity=r.severity, observed=r.observed)
                    for r in checks.results
                    if not r.success
                ][:20],
            )
    return previous


def _warehouse(run: RunObservation, previous: WarehouseStatus | None) -> WarehouseStatus | None:
    """The warehouse as the run's latest stage that measured it saw it."""
    measured = [
        (o.summary.finishedAt or "", o.summary.warehouse)
        for o in run.stages
        if o.summary is not None and o.summary.warehouse is not None
    ]
    if not measured:
        return previous
    finished_at, usage = max(measured, key=lambda pair: pair[0])
    return WarehouseStatus(
        sizeBytes=usage.sizeBytes,
        capacityBytes=usage.capacityBytes,
        availableBytes=usage.availableBytes,
        measuredAt=finished_at or None,
    )


def _published(run: RunObservation, previous: Sequence[PublishedStatus]) -> list[PublishedStatus]:
    for observation in run.stages:
        summary = observation.summary
        if observation.stage == "publish" and summary is not None and summary.ok:
            return [
                PublishedStatus(
                    table=p.table,
                    target=p.target,
                    rows=p.rows,
                    runId=run.run_id,
                    publishedAt=summary.finishedAt,
                )
                for p in summary.published
            ]
    return list(previous)


NULL_KPI_MESSAGE = "the aggregate is NULL (no rows, or only NULL values)"


def _kpis(
    spec: DataPipelineSpec, run: RunObservation | None, previous: Sequence[KpiStatus]
) -> list[KpiStatus]:
    """The KPIs the run's check stage computed (with the error of one it could not), else
    the previous ones; only the KPIs the spec still declares."""
    declared = {metric.name for metric in spec.metrics}
    kpis = list(previous)
    for observation in run.stages if run is not None else ():
        summary = observation.summary
        if observation.stage == "check" and summary is not None and summary.kpis:
            kpis = [
                KpiStatus(
                    name=k.name,
                    table=k.table,
                    value=k.value,
                    runId=run.run_id if run is not None else None,
                    computedAt=summary.finishedAt,
                    message=k.error or (None if k.value is not None else NULL_KPI_MESSAGE),
                )
                for k in summary.kpis
            ]
    return [k for k in kpis if k.name in declared]


def _retention(run: RunObservation, previous: RetentionStatus | None) -> RetentionStatus | None:
    """What the run's ingest pruned (retention); the last pruning stays until another."""
    for observation in run.stages:
        summary = observation.summary
        if observation.stage == "ingest" and summary is not None and summary.ok and summary.pruned:
            return RetentionStatus(
                runId=run.run_id,
                prunedAt=summary.finishedAt,
                rowsPruned=sum(summary.pruned.values()),
                tables=dict(summary.pruned),
            )
    return previous


@dataclass(frozen=True)
class Problem:
    """Why the operator cannot act on the current generation (deployment health).

    Permanent problems need a change by someone (a spec edit, a Secret, an image): Stalled.
    Transient ones (the API server away for a moment) are retried: Reconciling."""

    reason: str
    message: str
    transient: bool = False


def carried_problem(previous: DataPipelineStatus) -> Problem | None:
    """A refused child is only seen while applying; syncs in between keep reporting it."""
    stalled = get_condition(previous.conditions, STALLED)
    if stalled is not None and stalled.status == "True" and stalled.reason == CHILD_REJECTED:
        return Problem(stalled.reason, stalled.message)
    return None


def compute_status(
    *,
    spec: DataPipelineSpec | None,
    generation: int | None,
    previous: DataPipelineStatus,
    run: RunObservation | None,
    now: datetime,
    next_schedule_time: str | None = None,
    problem: Problem | None = None,
) -> DataPipelineStatus:
    """The new status. Pure: the same inputs give the same status (no churn).

    `generation` is the generation the operator has acted on: applied its children, or found
    the Problem that stops it. It becomes `observedGeneration`."""
    status = previous.model_copy(deep=True)
    conditions = list(status.conditions)

    def condition(type: str, value: str, reason: str, message: str) -> None:
        nonlocal conditions
        conditions = set_condition(
            conditions,
            type=type,
            status=value,
            reason=reason,
            message=message,
            generation=generation,
            now=now,
        )

    status.observedGeneration = generation
    if spec is None:
        problem = problem or Problem("InvalidSpec", "the spec is invalid")
    else:
        _data_health(status, spec, run, now, next_schedule_time, condition)
        conditions = _without(conditions, PUBLISHED) if not spec.publish else conditions
        data_ready, data_reason, data_message = _data_readiness(status, previous)
        condition(DATA_READY, data_ready, data_reason, data_message)
    ready, reason, message = _deployment_readiness(problem, generation)
    condition(READY, ready, reason, message)
    conditions = _without(conditions, STALLED, RECONCILING)
    if problem is not None:
        condition(RECONCILING if problem.transient else STALLED, "True", reason, message)
    status.conditions = conditions
    return status


def _without(conditions: list[Condition], *types: str) -> list[Condition]:
    return [c for c in conditions if c.type not in types]


def _deployment_readiness(problem: Problem | None, generation: int | None) -> tuple[str, str, str]:
    if problem is None:
        return "True", "Reconciled", f"generation {generation} applied"
    if problem.transient:
        return "Unknown", problem.reason, problem.message
    return "False", problem.reason, problem.message


def _record_run(status: DataPipelineStatus, current: RunStatus, now: datetime) -> None:
    """lastRun, lastSuccessfulRun and the RFC 3339 times of the last success and failure."""
    earlier = status.lastRun
    status.lastRun = current
    if current.result == "Running":
        return
    if earlier is not None and (earlier.id, earlier.result) == (current.id, current.result):
        return  # already recorded: the times stay put (no churn)
    when = current.completionTime or rfc3339(now)
    if current.result == "Succeeded":
        status.lastSuccessfulRun = current
        status.lastSuccessfulTime = when
    else:
        status.lastFailureTime = when


def _data_health(
    status: DataPipelineStatus,
    spec: DataPipelineSpec,
    run: RunObservation | None,
    now: datetime,
    next_schedule_time: str | None,
    condition: Callable[[str, str, str, str], None],
) -> None:
    """Runs, tables, freshness, quality and publishing: the Fresh, ChecksPassed, Suspended
    and Published conditions."""
    status.nextScheduleTime = None if spec.suspend else next_schedule_time
    if status.lastSuccessfulTime is None and status.lastSuccessfulRun is not None:
        status.lastSuccessfulTime = status.lastSuccessfulRun.completionTime  # older statuses
    if run is not None:
        _record_run(status, run_status(run, spec.stages()), now)
        status.tables = _merge_tables(status.tables, run)
        status.totalRows = final_rows(spec, status.tables)
        status.quality = _quality(run, status.quality)
        status.published = _published(run, status.published)
        status.retention = _retention(run, status.retention)
        status.warehouse = _warehouse(run, status.warehouse)
        last_loaded = _last_loaded_at(
            run, status.freshness.lastLoadedAt if status.freshness else None
        )
    else:
        last_loaded = status.freshness.lastLoadedAt if status.freshness else None
    status.kpis = _kpis(spec, run, status.kpis)

    state = freshness_state(spec, last_loaded, now)
    status.freshness = FreshnessStatus(state=state, lastLoadedAt=last_loaded)
    condition(FRESH, *_fresh_condition(spec, state, last_loaded))
    condition(CHECKS_PASSED, *_checks_condition(spec, status.quality))
    if spec.suspend:
        condition(SUSPENDED, "True", "SuspendedBySpec", "spec.suspend is true: no new runs")
    else:
        condition(SUSPENDED, "False", "Active", "runs on schedule")
    if spec.publish:
        _publish_condition(status.lastRun, condition)


def _fresh_condition(
    spec: DataPipelineSpec, state: str, last_loaded: str | None
) -> tuple[str, str, str]:
    freshness = spec.freshness
    if state == "Fresh":
        return "True", "Fresh", f"last load at {last_loaded}"
    if state == "Warn":
        warn_after = freshness.warnAfter if freshness else ""
        return (
            "False",
            "FreshnessWarning",
            f"last load at {last_loaded} is older than warnAfter {warn_after}",
        )
    if state == "Stale":
        error_after = freshness.errorAfter if freshness else ""
        message = f"last load at {last_loaded} is older than errorAfter {error_after}"
        return "False", "Stale", message
    return "Unknown", "NeverLoaded", "no successful ingest yet"


def _checks_condition(
    spec: DataPipelineSpec, quality: QualityStatus | None
) -> tuple[str, str, str]:
    if not (spec.quality and spec.quality.checks) and quality is None:
        return "True", "NoChecks", "no checks are defined"
    if quality is None:
        return "Unknown", "NotChecked", "checks have not run yet"
    if quality.failed:
        names = ", ".join(f.name for f in quality.failures if f.severity == "error")
        return "False", "ChecksFailed", f"{quality.failed} failed: {names}"
    if quality.warned:
        return "True", "ChecksWarned", f"{quality.warned} warning(s)"
    return "True", "AllChecksPassed", f"{quality.passed} passed"


def _publish_condition(
    last_run: RunStatus | None, condition: Callable[[str, str, str, str], None]
) -> None:
    stage = next((s for s in last_run.stages if s.stage == "publish"), None) if last_run else None
    if stage is None or stage.result in ("Pending", "Waiting", "Running"):
        if last_run is None:
            condition(PUBLISHED, "Unknown", "NotPublished", "nothing published yet")
        return
    if stage.result == "Succeeded":
        condition(PUBLISHED, "True", "Published", f"{stage.rows or 0} rows published")
    elif stage.result == "Blocked":
        condition(PUBLISHED, "False", "PublishBlocked", stage.message or "checks failed")
    elif stage.result == "Failed":
        condition(PUBLISHED, "False", "PublishFailed", stage.message or "publish failed")


def _failure_reason(run: RunStatus, stage: StageResult | None) -> str:
    if run.result == "Blocked":
        return "PublishBlocked"
    if stage is not None and stage.stage == "check":
        return "ChecksFailed"
    if stage is not None and stage.stage == "publish":
        return "PublishFailed"
    return "RunFailed"


def _data_readiness(
    status: DataPipelineStatus, previous: DataPipelineStatus
) -> tuple[str, str, str]:
    """DataReady: the last finished run succeeded and the data is not stale."""
    last = status.lastRun
    if last is not None and last.result in ("Failed", "Blocked"):
        failed = next((s for s in last.stages if s.result in ("Failed", "Blocked")), None)
        stage = failed.stage if failed else "?"
        detail = failed.message if failed and failed.message else last.result.lower()
        return "False", _failure_reason(last, failed), f"run {last.id}: {stage}: {detail}"
    before = get_condition(previous.conditions, DATA_READY)
    if (
        last is not None
        and last.result == "Running"
        and before is not None
        and before.status == "False"
        and before.reason in RUN_FAILURE_REASONS
    ):
        # A degraded pipeline stays degraded while a new run is in progress.
        return "False", before.reason, before.message
    if status.freshness is not None and status.freshness.state == "Stale":
        return "False", "Stale", f"data is stale (last load {status.freshness.lastLoadedAt})"
    if status.lastSuccessfulRun is None:
        if last is not None and last.result == "Running":
            return "False", "FirstRunInProgress", f"run {last.id} is running"
        return "False", "AwaitingFirstRun", "no run has succeeded yet"
    return "True", "RunSucceeded", f"last successful run {status.lastSuccessfulRun.id}"
