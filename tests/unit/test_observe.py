"""Reading stage results from terminated Pods into a run observation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from duckherd.api import DataPipelineSpec, DataPipelineStatus, RunStatus, StageResult
from duckherd.status import RunObservation, run_status
from duckherd_operator.chain import JobView, Run
from duckherd_operator.observe import next_schedule_time, observe_run

SOURCES = [{"name": "customers", "file": {"path": "/dev/null", "format": "csv"}}]


def _job(state: str) -> JobView:
    return JobView(
        name="shop-ingest-1",
        stage="ingest",
        run_id="r1",
        labelled=True,
        trigger="Schedule",
        created="t1",
        state=state,
    )


def _pod(message: str | None, exit_code: int = 0, reason: str = "Error") -> dict[str, Any]:
    terminated: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": reason,
        "finishedAt": "2026-11-26T06:01:00Z",
    }
    if message is not None:
        terminated["message"] = message
    return {
        "metadata": {"name": "shop-ingest-1-abcde", "labels": {"job-name": "shop-ingest-1"}},
        "status": {"containerStatuses": [{"state": {"terminated": terminated}}]},
    }


def _observe(
    state: str, pods: list[dict[str, Any]], previous: DataPipelineStatus | None = None
) -> Any:
    run = Run(run_id="r1", trigger="Schedule", jobs=(_job(state),))
    return observe_run(run, {"shop-ingest-1": pods}, previous or DataPipelineStatus()).stages[0]


def test_a_valid_summary_is_read() -> None:
    stage = _observe(
        "Succeeded", [_pod('{"stage":"ingest","ok":true,"tables":{"raw.a":{"rows":5}}}')]
    )
    assert stage.state == "Succeeded"
    assert stage.summary is not None and stage.summary.tables["raw.a"].rows == 5


def test_a_garbled_message_fails_the_stage_with_a_clear_message() -> None:
    stage = _observe("Succeeded", [_pod("Segmentation fault {")])
    assert stage.state == "Failed"
    assert "not JSON" in stage.message and "exit 0" in stage.message


def test_an_empty_message_fails_the_stage() -> None:
    stage = _observe("Failed", [_pod(None, exit_code=1)])
    assert stage.state == "Failed" and "empty termination message" in stage.message


def test_a_pod_killed_on_its_node_says_so_not_its_log_lines() -> None:
    log_tail = "WARNING test pause point ingest.load.begun reached: waiting"
    stage = _observe("Failed", [_pod(log_tail, exit_code=137)])
    assert stage.state == "Failed"
    assert stage.message.startswith(
        "pod shop-ingest-1-abcde was killed (SIGKILL, exit 137) before it finished: stopped on "
        "its node (out of memory, a node restart, or killed); what it had not committed was "
        "discarded"
    )
    assert "pause point" not in stage.message


def test_a_container_lost_in_a_node_restart_names_the_kubelets_reason() -> None:
    lost = _pod(
        "The container could not be located when the pod was terminated",
        exit_code=137,
        reason="ContainerStatusUnknown",
    )
    stage = _observe("Failed", [lost])
    assert "was killed (ContainerStatusUnknown: The container could not be located" in (
        stage.message
    )


def test_an_out_of_memory_kill_says_which_limit_to_raise() -> None:
    stage = _observe("Failed", [_pod("", exit_code=137, reason="OOMKilled")])
    assert stage.message == (
        "pod shop-ingest-1-abcde ran out of memory (OOMKilled, exit 137) before it finished; "
        "what it had not committed was discarded. Raise spec.pod.resources.limits.memory"
    )


def test_a_gone_pod_keeps_the_recorded_result() -> None:
    previous = DataPipelineStatus(
        lastRun=RunStatus(
            id="r1",
            trigger="Schedule",
            result="Succeeded",
            stages=[
                StageResult(stage="ingest", job="shop-ingest-1", result="Succeeded", message="ok")
            ],
        )
    )
    stage = _observe("Succeeded", [], previous)
    assert (stage.state, stage.message) == ("Succeeded", "ok")


def test_a_gone_pod_without_a_record_is_a_failure_not_a_success() -> None:
    stage = _observe("Succeeded", [])
    assert stage.state == "Failed" and "pod is gone" in stage.message


def _unschedulable_pod() -> dict[str, Any]:
    why = "0/1 nodes are available: 1 Insufficient cpu."
    scheduled = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
    return {
        "metadata": {"name": "shop-ingest-1-abcde", "labels": {"job-name": "shop-ingest-1"}},
        "status": {"conditions": [{**scheduled, "message": why}], "containerStatuses": []},
    }


def test_a_pod_waiting_for_a_node_shows_the_stage_waiting_with_the_cause() -> None:
    stage = _observe("Running", [_unschedulable_pod()])
    assert stage.state == "Waiting"
    assert "waiting for a node" in stage.message and "Insufficient cpu" in stage.message
    run = RunObservation(run_id="r1", trigger="Schedule", stages=(stage,))
    status = run_status(run, ["ingest", "transform"])
    assert status.result == "Running"  # waiting is not failing
    assert [(s.stage, s.result) for s in status.stages] == [
        ("ingest", "Waiting"),
        ("transform", "Pending"),
    ]


def test_the_next_schedule_time_follows_the_clock_either_way() -> None:
    spec = DataPipelineSpec.model_validate({"schedule": "0 6 * * *", "sources": SOURCES})
    at = datetime(2026, 12, 2, 5, 0, tzinfo=UTC)
    assert next_schedule_time(spec, at) == "2026-12-02T06:00:00Z"
    assert next_schedule_time(spec, at.replace(hour=7)) == "2026-12-03T06:00:00Z"
    assert next_schedule_time(spec, at.replace(day=1)) == "2026-12-01T06:00:00Z"
    assert next_schedule_time(spec, at.replace(hour=5, minute=59)) == "2026-12-02T06:00:00Z"
