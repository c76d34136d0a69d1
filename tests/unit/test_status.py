"""Status and conditions: computed purely, stable at steady state, honest on failure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from duckherd.api import Condition, DataPipelineSpec, DataPipelineStatus, Stage
from duckherd.status import (
    Problem,
    RunObservation,
    StageObservation,
    carried_problem,
    compute_status,
    get_condition,
    set_condition,
)
from duckherd.summary import (
    CheckResult,
    ChecksSummary,
    StageResources,
    StageSummary,
    TableSummary,
    WarehouseUsage,
)
from tests.unit.manifests import spec

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
SPEC = DataPipelineSpec.model_validate(spec())
INGEST_ONLY = DataPipelineSpec.model_validate(
    {**spec(), "transform": None, "quality": None, "publish": []}
)


def test_last_transition_time_moves_only_on_a_flip() -> None:
    first = set_condition(
        [], type="Ready", status="False", reason="A", message="a", generation=1, now=NOW
    )
    later = NOW + timedelta(hours=1)
    same = set_condition(
        first, type="Ready", status="False", reason="B", message="b", generation=2, now=later
    )
    assert same[0].lastTransitionTime == first[0].lastTransitionTime
    assert same[0].reason == "B" and same[0].observedGeneration == 2
    flipped = set_condition(
        same, type="Ready", status="True", reason="C", message="c", generation=2, now=later
    )
    assert flipped[0].lastTransitionTime == "2026-11-26T09:00:00Z"


def ingest(ok: bool = True, loaded_at: str = "2026-11-26T07:00:00Z") -> StageObservation:
    summary = StageSummary(
        stage="ingest",
        ok=ok,
        tables={"raw.customers": TableSummary(rows=100, loaded=10, loadedAt=loaded_at)},
        finishedAt=loaded_at,
        error=None if ok else "HTTPStatusError: 500 from http://demo/customers",
    )
    return StageObservation(
        stage="ingest",
        job="shop-ingest-1",
        state="Succeeded" if ok else "Failed",
        completion_time=loaded_at,
        summary=summary,
    )


def check(failed: int) -> StageObservation:
    results = [CheckResult(name="customer_id not null", severity="error", success=failed == 0)]
    summary = StageSummary(
        stage="check",
        ok=failed == 0,
        checks=ChecksSummary(passed=1 - failed, failed=failed, results=results),
    )
    return StageObservation(
        stage="check", job="c", state="Succeeded" if not failed else "Failed", summary=summary
    )


def status_of(*stages: StageObservation, now: datetime = NOW) -> DataPipelineStatus:
    return compute_status(
        spec=SPEC,
        generation=3,
        previous=DataPipelineStatus(),
        run=RunObservation(run_id="r1", trigger="Schedule", stages=stages),
        now=now,
    )


def test_a_running_first_run_is_deployed_but_has_no_data_yet() -> None:
    status = status_of(ingest())
    assert status.lastRun is not None and status.lastRun.result == "Running"
    assert [s.result for s in status.lastRun.stages] == [
        "Succeeded",
        "Pending",
        "Pending",
        "Pending",
    ]
    ready = get_condition(status.conditions, "Ready")
    assert ready is not None and (ready.status, ready.reason) == ("True", "Reconciled")
    data = get_condition(status.conditions, "DataReady")
    assert data is not None and (data.status, data.reason) == ("False", "FirstRunInProgress")
    assert status.tables[0].rows == 100
    assert status.totalRows is None  # no mart yet: raw rows are not the pipeline's output
    assert status.freshness is not None and status.freshness.state == "Fresh"
    assert status.observedGeneration == 3


def built(stage: Stage, tables: dict[str, int]) -> StageObservation:
    summary = StageSummary(
        stage=stage,
        ok=True,
        tables={name: TableSummary(rows=rows) for name, rows in tables.items()},
        finishedAt="2026-11-26T07:30:00Z",
    )
    return StageObservation(stage=stage, job=stage, state="Succeeded", summary=summary)


def test_rows_are_the_marts_rows_not_raw_plus_marts() -> None:
    status = status_of(
        ingest(),
        built("transform", {"staging.stg_customers": 100, "marts.customer_analytics": 100}),
        built("check", {"marts.customer_analytics": 100}),
    )
    assert status.totalRows == 100
    per_table = {t.name: t.rows for t in status.tables}
    assert per_table == {
        "raw.customers": 100,
        "staging.stg_customers": 100,
        "marts.customer_analytics": 100,
    }


def test_without_a_transform_rows_are_the_raw_rows() -> None:
    status = compute_status(
        spec=INGEST_ONLY,
        generation=3,
        previous=DataPipelineStatus(),
        run=RunObservation(run_id="r1", trigger="Schedule", stages=(ingest(),)),
        now=NOW,
    )
    assert status.totalRows == 100


def test_a_failed_source_gives_data_ready_false_with_the_cause() -> None:
    status = status_of(ingest(ok=False))
    data = get_condition(status.conditions, "DataReady")
    assert data is not None and data.status == "False" and data.reason == "RunFailed"
    assert "HTTPStatusError: 500" in data.message
    assert status.tables == []
    ready = get_condition(status.conditions, "Ready")
    assert ready is not None and ready.status == "True", "a failed run is not a failed deploy"
    assert status.lastFailureTime == "2026-11-26T07:00:00Z" and status.lastSuccessfulTime is None


def test_failed_checks_block_publish() -> None:
    stages = (
        ingest(),
        StageObservation(
            stage="transform",
            job="t",
            state="Succeeded",
            summary=StageSummary(stage="transform", ok=True),
        ),
        check(failed=1),
    )
    status = status_of(*stages)
    assert status.lastRun is not None
    publish = status.lastRun.stages[-1]
    assert publish.result == "Blocked" and "customer_id not null" in (publish.message or "")
    checks = get_condition(status.conditions, "ChecksPassed")
    assert checks is not None and checks.reason == "ChecksFailed"
    published = get_condition(status.conditions, "Published")
    assert published is not None and published.reason == "PublishBlocked"
    data = get_condition(status.conditions, "DataReady")
    assert data is not None and (data.status, data.reason) == ("False", "ChecksFailed")


def test_dbt_test_failures_of_a_failed_transform_show_in_quality() -> None:
    """No check stage runs after a transform failed on a dbt test: status.quality shows it."""
    results = [
        CheckResult(name="dbt:unique_customers_id", severity="error", success=False, observed="2"),
        CheckResult(name="dbt:not_null_customers_id", severity="error", success=True),
    ]
    transform = StageObservation(
        stage="transform",
        job="t",
        state="Failed",
        summary=StageSummary(
            stage="transform",
            ok=False,
            checks=ChecksSummary(passed=1, failed=1, results=results),
            error="dbt build failed",
        ),
    )
    status = status_of(ingest(), transform)
    assert status.quality is not None
    assert (status.quality.passed, status.quality.failed) == (1, 1)
    assert [f.name for f in status.quality.failures] == ["dbt:unique_customers_id"]
    checks = get_condition(status.conditions, "ChecksPassed")
    assert checks is not None and checks.reason == "ChecksFailed"
    assert "dbt:unique_customers_id" in checks.message


def test_the_check_stage_verdict_wins_over_the_transforms_dbt_tests() -> None:
    dbt = [CheckResult(name="dbt:unique_customers_id", severity="warn", success=False)]
    transform = StageObservation(
        stage="transform",
        job="t",
        state="Succeeded",
        summary=StageSummary(
            stage="transform", ok=True, checks=ChecksSummary(warned=1, results=dbt)
        ),
    )
    status = status_of(ingest(), transform, check(failed=1))
    assert status.quality is not None
    assert (status.quality.passed, status.quality.failed, status.quality.warned) == (0, 1, 0)


def test_freshness_goes_warn_then_stale() -> None:
    assert status_of(ingest(), now=NOW + timedelta(hours=30)).freshness.state == "Warn"  # type: ignore[union-attr]
    stale = status_of(ingest(), now=NOW + timedelta(hours=50))
    assert stale.freshness is not None and stale.freshness.state == "Stale"
    fresh = get_condition(stale.conditions, "Fresh")
    assert fresh is not None and fresh.reason == "Stale"
    data = get_condition(stale.conditions, "DataReady")
    assert data is not None and (data.status, data.reason) == ("False", "Stale")


def test_the_same_inputs_give_the_same_status() -> None:
    first = status_of(ingest())
    again = compute_status(
        spec=SPEC,
        generation=3,
        previous=first,
        run=RunObservation(run_id="r1", trigger="Schedule", stages=(ingest(),)),
        now=NOW + timedelta(minutes=5),
    )
    assert again == first


def test_an_invalid_spec_is_stalled_and_keeps_the_rest_of_status() -> None:
    before = status_of(ingest())
    after = compute_status(
        spec=None,
        generation=4,
        previous=before,
        run=None,
        now=NOW,
        problem=Problem("InvalidSpec", "spec.schedule: invalid cron expression 'x'"),
    )
    ready = get_condition(after.conditions, "Ready")
    assert ready is not None and (ready.status, ready.reason) == ("False", "InvalidSpec")
    assert "spec.schedule" in ready.message
    stalled = get_condition(after.conditions, "Stalled")
    assert stalled is not None and (stalled.status, stalled.reason) == ("True", "InvalidSpec")
    assert after.observedGeneration == 4, "kstatus reads Stalled only for the observed generation"
    assert after.tables == before.tables


def with_problem(problem: Problem, generation: int = 2) -> DataPipelineStatus:
    """A new pipeline's status when the operator meets `problem` acting on it."""
    return compute_status(
        spec=SPEC,
        generation=generation,
        previous=DataPipelineStatus(),
        run=None,
        now=NOW,
        problem=problem,
    )


def test_fixing_the_cause_clears_stalled_without_a_run() -> None:
    stalled = with_problem(Problem("ChildRejected", "the API server refused CronJob x: ..."))
    assert carried_problem(stalled) == Problem("ChildRejected", stalled.conditions[-1].message)
    fixed = compute_status(
        spec=SPEC, generation=3, previous=stalled, run=None, now=NOW + timedelta(minutes=1)
    )
    types = {c.type: (c.status, c.reason) for c in fixed.conditions}
    assert "Stalled" not in types and "Reconciling" not in types
    assert types["Ready"] == ("True", "Reconciled")
    assert types["DataReady"] == ("False", "AwaitingFirstRun")
    assert carried_problem(fixed) is None


def test_a_transient_problem_is_reconciling_not_stalled() -> None:
    status = with_problem(Problem("ApplyRetrying", "applying ConfigMap x failed", transient=True))
    types = {c.type: (c.status, c.reason) for c in status.conditions}
    assert types["Reconciling"] == ("True", "ApplyRetrying")
    assert types["Ready"] == ("Unknown", "ApplyRetrying")
    assert "Stalled" not in types


def next_status(
    previous: DataPipelineStatus, run: str, *stages: StageObservation, now: datetime = NOW
) -> DataPipelineStatus:
    """The status after observing a run of the ingest-only pipeline."""
    observation = RunObservation(run_id=run, trigger="Manual", stages=stages)
    return compute_status(
        spec=INGEST_ONLY, generation=3, previous=previous, run=observation, now=now
    )


def test_a_degraded_pipeline_stays_degraded_while_a_new_run_runs() -> None:
    succeeded = next_status(DataPipelineStatus(), "r1", ingest())
    failed = next_status(succeeded, "r2", failed_ingest())
    running = next_status(failed, "r3", running_ingest())
    data = get_condition(running.conditions, "DataReady")
    assert data is not None and (data.status, data.reason) == ("False", "RunFailed")
    assert "run r2" in data.message
    recovered = next_status(running, "r3", ingest(loaded_at="2026-11-26T07:30:00Z"))
    data = get_condition(recovered.conditions, "DataReady")
    assert data is not None and (data.status, data.reason) == ("True", "RunSucceeded")
    assert recovered.lastSuccessfulTime == "2026-11-26T07:30:00Z"


def test_success_and_failure_times_are_recorded_once() -> None:
    first = next_status(DataPipelineStatus(), "r1", ingest())
    assert first.lastSuccessfulTime == "2026-11-26T07:00:00Z" and first.lastFailureTime is None
    data = get_condition(first.conditions, "DataReady")
    assert data is not None and (data.status, data.reason) == ("True", "RunSucceeded")
    failed = next_status(first, "r2", failed_ingest(), now=NOW + timedelta(hours=2))
    assert failed.lastFailureTime == "2026-11-26T10:00:00Z"
    assert failed.lastSuccessfulTime == first.lastSuccessfulTime
    again = next_status(failed, "r2", failed_ingest(), now=NOW + timedelta(hours=5))
    assert again == failed, "a finished run's times do not move"


def running_ingest() -> StageObservation:
    return StageObservation(stage="ingest", job="shop-ingest-2", state="Running")


def failed_ingest() -> StageObservation:
    """A failed Job has no completionTime: the time the operator saw it fail counts."""
    return StageObservation(stage="ingest", job="shop-ingest-2", state="Failed", message="exit 1")


def test_conditions_follow_metav1_condition() -> None:
    status = status_of(ingest())
    for condition in status.conditions:
        Condition.model_validate(condition.model_dump())
        assert condition.reason[0].isupper() and " " not in condition.reason
    assert {c.type for c in status.conditions} >= {
        "Ready",
        "DataReady",
        "Fresh",
        "ChecksPassed",
        "Suspended",
    }


def test_stage_resources_and_the_warehouse_reach_status() -> None:
    def measured(stage: Stage, finished: str, size: int) -> StageObservation:
        summary = StageSummary(
            stage=stage,
            ok=True,
            finishedAt=finished,
            resources=StageResources(peakMemoryBytes=200_000_000, cpuSeconds=1.5),
            warehouse=WarehouseUsage(
                sizeBytes=size, capacityBytes=1_000_000_000, availableBytes=900_000_000
            ),
        )
        return StageObservation(stage=stage, job=stage, state="Succeeded", summary=summary)

    status = status_of(
        measured("transform", "2026-11-26T07:05:00Z", 5_000),
        measured("ingest", "2026-11-26T07:00:00Z", 3_000),
    )
    assert status.lastRun is not None
    transform = next(s for s in status.lastRun.stages if s.stage == "transform")
    assert (transform.peakMemoryBytes, transform.cpuSeconds) == (200_000_000, 1.5)
    # The warehouse as the latest stage saw it, whatever the order of the observations.
    assert status.warehouse is not None
    assert status.warehouse.sizeBytes == 5_000
    assert status.warehouse.measuredAt == "2026-11-26T07:05:00Z"
    assert status.warehouse.availableBytes == 900_000_000
    # A run whose stages measured nothing keeps what status held.
    later = compute_status(
        spec=SPEC,
        generation=3,
        previous=status,
        run=RunObservation(run_id="r2", trigger="Schedule", stages=(ingest(),)),
        now=NOW,
    )
    assert later.warehouse == status.warehouse
