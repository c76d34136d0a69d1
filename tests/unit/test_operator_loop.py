"""The reconcile loop below e2e: a Job event → the next stage → the status patch → Events.

The real operator runs in-process against kmock's Kubernetes emulator (see operator_harness).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import pytest

from tests.unit.operator_harness import (
    NAMESPACE,
    PIPELINE,
    eventually,
    finished_pod,
    free_port,
    objects_of,
    pipeline_status,
    posted_events,
    put,
    put_pipeline_with_children,
    running_operator,
    stage_job,
)

INGEST_JOB = "shop-ingest-29400000"  # as the ingest CronJob names a scheduled Job


def _stage_of(job: dict[str, Any]) -> str:
    return str(job["metadata"]["labels"]["duckherd.io/stage"])


def _jobs_by_stage(server: kmock.KubernetesEmulator) -> dict[str, dict[str, Any]]:
    return {_stage_of(job): job for job in objects_of(server, "batch/v1/jobs").values()}


def _stage_results(server: kmock.KubernetesEmulator) -> dict[str, str]:
    """The result of each stage that has a Job in the last run."""
    last = pipeline_status(server).get("lastRun") or {}
    return {s["stage"]: s["result"] for s in last.get("stages", []) if s.get("job")}


def _event_reasons(server: kmock.KubernetesEmulator) -> list[tuple[str, str]]:
    return [(event["reason"], event["message"]) for event in posted_events(server)]


async def test_a_finished_stage_chains_the_next_and_reports_it(
    kmock: kmock.KubernetesEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    put_pipeline_with_children(kmock)
    put(kmock, stage_job(INGEST_JOB, "ingest", run_id=None, complete=True))
    put(kmock, finished_pod(INGEST_JOB, "ingest"))

    async with running_operator(kmock, tmp_path, monkeypatch):
        # The scheduled ingest finished: the run is named after it, transform starts in it.
        transform = await eventually(
            "the transform Job", lambda: _jobs_by_stage(kmock).get("transform")
        )
        labels = transform["metadata"]["labels"]
        assert labels["duckherd.io/run-id"] == INGEST_JOB
        assert labels["duckherd.io/trigger"] == "Schedule"
        owner = transform["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"]) == ("CronJob", "shop-transform-uid")
        ingest_labels = _jobs_by_stage(kmock)["ingest"]["metadata"]["labels"]
        assert ingest_labels["duckherd.io/run-id"] == INGEST_JOB  # the starting Job is labelled

        await eventually(
            "status with the running transform",
            lambda: (
                _stage_results(kmock) == {"ingest": "Succeeded", "transform": "Pending"}
                and pipeline_status(kmock).get("observedGeneration") == 1
            ),  # children applied
            lambda: pipeline_status(kmock),
        )
        status = pipeline_status(kmock)
        assert status["lastRun"]["id"] == INGEST_JOB
        assert status["lastRun"]["result"] == "Running"
        await eventually(
            "a StageSucceeded Event for ingest",
            lambda: ("StageSucceeded", f"ingest ({INGEST_JOB}) succeeded") in _event_reasons(kmock),
        )
        posted = posted_events(kmock)[0]
        assert posted["involvedObject"]["kind"] == "DataPipeline"
        assert posted["involvedObject"]["name"] == PIPELINE

        # The transform Job completes (a watch event): check follows, status and Events too.
        name = transform["metadata"]["name"]
        await kmock.post(
            f"/api/v1/namespaces/{NAMESPACE}/pods", json=finished_pod(name, "transform")
        )
        await kmock.patch(
            f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{name}",
            json=stage_job(name, "transform", run_id=INGEST_JOB, complete=True),
        )
        check = await eventually("the check Job", lambda: _jobs_by_stage(kmock).get("check"))
        assert check["metadata"]["labels"]["duckherd.io/run-id"] == INGEST_JOB
        await eventually(
            "status with transform succeeded",
            lambda: (
                _stage_results(kmock)
                == {"ingest": "Succeeded", "transform": "Succeeded", "check": "Pending"}
            ),
        )
        await eventually(
            "a StageSucceeded Event for transform",
            lambda: ("StageSucceeded", f"transform ({name}) succeeded") in _event_reasons(kmock),
        )
    # Each transition was reported once: no Event repeats while nothing changes.
    reasons = _event_reasons(kmock)
    assert len(reasons) == len(set(reasons)), reasons
    # Watch events (of Jobs, Pods and the pipeline, whose status changed several times) are
    # routine: their handlers' successes are not logged at INFO; a spec handled is.
    successes = {
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.INFO and re.fullmatch(r"Handler '\w+' succeeded\.", r.getMessage())
    }
    assert successes == {"Handler 'reconcile_pipeline' succeeded."}


async def _answers(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url) as response:
            return response.status == 200
    except aiohttp.ClientConnectionError:
        return False


async def test_probe_requests_do_not_log_at_info(
    kmock: kmock.KubernetesEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    port = free_port()
    url = f"http://127.0.0.1:{port}/healthz"
    async with (
        running_operator(kmock, tmp_path, monkeypatch, liveness_port=port),
        aiohttp.ClientSession() as session,
    ):
        assert await eventually("the liveness endpoint", lambda: _answers(session, url))
        for _ in range(3):  # as the kubelet's liveness and readiness probes do
            async with session.get(url) as response:
                assert response.status == 200
    probe_lines = [
        record.getMessage()
        for record in caplog.records
        if record.levelno >= logging.INFO and "/healthz" in record.getMessage()
    ]
    assert probe_lines == []
