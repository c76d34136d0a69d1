"""Events for transitions only, and Events the API server accepts."""

from __future__ import annotations

from datetime import UTC, datetime

from duckherd.api import Condition, DataPipelineStatus, RunStatus, StageResult
from duckherd_operator.report import (
    MAX_EVENT_MESSAGE,
    Notice,
    event_manifest,
    status_patch,
    transition_notices,
)

T = "2026-11-26T06:00:00Z"


def _status(
    *stages: tuple[str, str], result: str = "Running", ready: str = ""
) -> DataPipelineStatus:
    run = RunStatus(
        id="r1",
        trigger="Schedule",
        result=result,
        stages=[StageResult(stage=s, job=f"shop-{s}", result=r, message="boom") for s, r in stages],
    )
    conditions = []
    if ready:
        status, reason = ready.split(":")
        conditions = [Condition(type="Ready", status=status, lastTransitionTime=T, reason=reason)]
    return DataPipelineStatus(lastRun=run, conditions=conditions)


def test_a_stage_result_is_told_once() -> None:
    before = _status(("ingest", "Running"))
    after = _status(("ingest", "Succeeded"), ("transform", "Pending"))
    assert transition_notices(before, after) == [
        Notice("Normal", "StageSucceeded", "ingest (shop-ingest) succeeded")
    ]
    assert transition_notices(after, after) == []


def test_a_failed_run_warns_with_the_stage_message() -> None:
    before = _status(("ingest", "Succeeded"), ("transform", "Running"))
    after = _status(("ingest", "Succeeded"), ("transform", "Failed"), result="Failed")
    assert transition_notices(before, after) == [
        Notice("Warning", "StageFailed", "transform (shop-transform): boom"),
        Notice("Warning", "RunFailed", "run r1: failed"),
    ]


def test_ready_changes_are_told_and_a_first_run_is_not_a_warning() -> None:
    first = _status(ready="False:FirstRunInProgress")
    ready = _status(ready="True:RunSucceeded")
    broken = _status(ready="False:MissingSecret")
    assert [n.type for n in transition_notices(DataPipelineStatus(), first)] == ["Normal"]
    assert [(n.type, n.reason) for n in transition_notices(first, ready)] == [
        ("Normal", "RunSucceeded")
    ]
    assert [(n.type, n.reason) for n in transition_notices(ready, broken)] == [
        ("Warning", "MissingSecret")
    ]


def test_status_patch_clears_what_the_new_status_dropped() -> None:
    assert status_patch({"lastRun": {}, "tables": []}, {"tables": [1]}) == {
        "tables": [1],
        "lastRun": None,
    }


def test_event_names_the_pipeline_and_bounds_the_message() -> None:
    body = {
        "apiVersion": "duckherd.io/v1alpha1",
        "kind": "DataPipeline",
        "metadata": {"name": "shop", "namespace": "ns", "uid": "u1"},
    }
    now = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
    event = event_manifest(body, Notice("Warning", "StageFailed", "x" * 5000), now)
    assert event["involvedObject"] == {
        "apiVersion": "duckherd.io/v1alpha1",
        "kind": "DataPipeline",
        "name": "shop",
        "namespace": "ns",
        "uid": "u1",
    }
    assert event["metadata"]["name"].startswith("shop.")
    assert event["metadata"]["namespace"] == "ns"
    assert len(event["message"]) == MAX_EVENT_MESSAGE
    assert (event["type"], event["reason"], event["lastTimestamp"]) == ("Warning", "StageFailed", T)


def test_status_patch_never_writes_the_notifiers_record() -> None:
    """status.notification belongs to the notifier: a pass that read an older copy (or none)
    must neither write it back nor clear it."""
    record = {"state": "Failing", "reason": "RunFailed", "time": "t", "delivered": True}
    old = {"notification": record, "tables": []}
    assert status_patch(old, {"notification": record, "tables": [1]}) == {"tables": [1]}
    assert status_patch(old, {"tables": [1]}) == {"tables": [1]}
