"""Chaining decisions: which stage starts next, and never two writers at once."""

from __future__ import annotations

from typing import Any

from duckherd.api import Stage
from duckherd_operator.chain import LabelRun, StartStage, decide, job_view

PLANNED: list[Stage] = ["ingest", "transform", "check", "publish"]


def job(
    name: str,
    stage: str,
    state: str,
    created: str,
    run_id: str | None = None,
    manual: bool = False,
) -> dict[str, Any]:
    labels = {"duckherd.io/stage": stage, "duckherd.io/pipeline": "shop"}
    if run_id:
        labels["duckherd.io/run-id"] = run_id
    conditions = {
        "Succeeded": [{"type": "Complete", "status": "True"}],
        "Failed": [{"type": "Failed", "status": "True"}],
    }.get(state, [])
    status: dict[str, Any] = {"conditions": conditions}
    if state == "Running":
        status["active"] = 1
    annotations = {"cronjob.kubernetes.io/instantiate": "manual"} if manual else {}
    return {
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": annotations,
            "creationTimestamp": created,
        },
        "status": status,
    }


def views(*jobs: dict[str, Any]) -> list[Any]:
    return [v for j in jobs if (v := job_view(j)) is not None]


def test_a_scheduled_ingest_starts_a_run_named_after_it() -> None:
    latest, actions = decide(PLANNED, views(job("shop-ingest-1", "ingest", "Succeeded", "t1")))
    assert latest is not None and latest.run_id == "shop-ingest-1"
    assert actions == [
        LabelRun(job="shop-ingest-1", run_id="shop-ingest-1", trigger="Schedule"),
        StartStage(run_id="shop-ingest-1", stage="transform", trigger="Schedule"),
    ]


def test_nothing_starts_while_any_stage_job_is_active() -> None:
    jobs = views(
        job("i1", "ingest", "Succeeded", "t1", run_id="i1"),
        job("manual-check", "check", "Running", "t2", run_id="manual-check"),
    )
    _, actions = decide(PLANNED, jobs)
    assert not any(isinstance(a, StartStage) for a in actions)


def test_an_existing_next_stage_is_not_started_twice() -> None:
    jobs = views(
        job("i1", "ingest", "Succeeded", "t1", run_id="i1"),
        job("t1", "transform", "Succeeded", "t2", run_id="i1"),
    )
    _, actions = decide(PLANNED, jobs)
    assert actions == [StartStage(run_id="i1", stage="check", trigger="Schedule")]


def test_a_failed_stage_ends_the_chain() -> None:
    jobs = views(
        job("i1", "ingest", "Succeeded", "t1", run_id="i1"),
        job("t1", "transform", "Failed", "t2", run_id="i1"),
    )
    assert decide(PLANNED, jobs)[1] == []


def test_only_the_newest_run_is_chained() -> None:
    jobs = views(
        job("old", "ingest", "Succeeded", "t1", run_id="old"),
        job("new", "ingest", "Failed", "t2", run_id="new"),
    )
    latest, actions = decide(PLANNED, jobs)
    assert latest is not None and latest.run_id == "new"
    assert actions == []


def test_a_manual_downstream_job_starts_a_run_there_and_chains_on() -> None:
    jobs = views(job("fix-transform", "transform", "Succeeded", "t1", manual=True))
    latest, actions = decide(PLANNED, jobs)
    assert latest is not None and latest.trigger == "Manual"
    assert StartStage(run_id="fix-transform", stage="check", trigger="Manual") in actions


def test_the_last_stage_ends_the_run() -> None:
    jobs = views(
        job("i1", "ingest", "Succeeded", "t1", run_id="i1"),
        job("t1", "transform", "Succeeded", "t2", run_id="i1"),
    )
    assert decide(["ingest", "transform"], jobs)[1] == []


def test_non_stage_jobs_are_ignored() -> None:
    foreign = {"metadata": {"name": "x", "labels": {}}, "status": {}}
    assert job_view(foreign) is None
