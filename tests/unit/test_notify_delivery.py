"""Webhook notifications end to end below the cluster: the real operator (Kopf, our handlers,
the notifier) against kmock's Kubernetes emulator, POSTing to a real HTTP receiver on loopback.

The receiver is an aiohttp server in the test's event loop that answers as each test tells it
(500s, a 404, or nothing until released); the webhook URL lives in a Secret as the chart
names it, and its secret part (a Slack-like path) must show nowhere: logs, Events, status.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kmock
import pytest
from aiohttp import web

from duckherd_operator import metrics
from duckherd_operator.context import new_memo
from duckherd_operator.webhook import WebhookConfig
from tests.unit.manifests import spec
from tests.unit.operator_harness import (
    NAMESPACE,
    PIPELINE,
    eventually,
    finished_pod,
    free_port,
    pipeline_status,
    posted_events,
    put,
    put_pipeline_with_children,
    running_operator,
    stage_job,
)

SECRET_NAMESPACE = "duckherd-system"
SECRET_PATH = "/services/T0000/B0000/s3cr3t-webhook-token"
FAILED_JOB = "shop-ingest-29400000"
GOOD_JOB = "shop-ingest-29401440"


@dataclass
class Receiver:
    """A webhook receiver: records every POST and answers from `answers` (then 200)."""

    answers: list[tuple[int, str]] = field(default_factory=list)
    hold: asyncio.Event | None = None  # when set, every request waits for it
    received: list[tuple[dict[str, Any], int]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        assert request.path == SECRET_PATH
        body = await request.json()
        if self.hold is not None:
            await self.hold.wait()
        status, text = self.answers.pop(0) if self.answers else (200, "ok")
        self.received.append((body, status))
        return web.Response(status=status, text=text)

    def accepted(self) -> list[tuple[str, str]]:
        return [(body["state"], body["reason"]) for body, status in self.received if status == 200]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post(SECRET_PATH, found.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    found.url = f"http://127.0.0.1:{port}{SECRET_PATH}"
    try:
        yield found
    finally:
        if found.hold is not None:
            found.hold.set()
        await runner.cleanup()


def _ingest_only() -> dict[str, Any]:
    body = spec(publish=[])
    del body["transform"], body["quality"]
    return body


def _scene(server: kmock.KubernetesEmulator, url: str) -> None:
    """An ingest-only pipeline whose scheduled run failed, and the webhook Secret."""
    put_pipeline_with_children(server, _ingest_only())
    put(server, stage_job(FAILED_JOB, "ingest", run_id=None, complete=True, failed=True))
    put(server, finished_pod(FAILED_JOB, "ingest", error="HTTPStatusError: 500 from the CRM"))
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "webhook", "namespace": SECRET_NAMESPACE},
        # A trailing newline, as `echo URL | kubectl create secret ... --from-file` leaves it.
        "data": {"url": base64.b64encode(f"{url}\n".encode()).decode()},
    }
    put(server, secret)


async def _recover(server: kmock.KubernetesEmulator) -> None:
    """A later scheduled run succeeds (its Pod first, then its Job: a watch event)."""
    await server.post(f"/api/v1/namespaces/{NAMESPACE}/pods", json=finished_pod(GOOD_JOB, "ingest"))
    job = stage_job(GOOD_JOB, "ingest", run_id=None, complete=True)
    job["metadata"]["creationTimestamp"] = "2026-11-27T06:00:00Z"
    await server.post(f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs", json=job)


def _memo(format: str = "json", timeout: float = 30.0) -> Any:
    config = WebhookConfig(
        SECRET_NAMESPACE,
        "webhook",
        "url",
        format,  # type: ignore[arg-type]
        first_retry_seconds=0.05,
        max_retry_seconds=0.2,
        timeout_seconds=timeout,
    )
    return new_memo(config)


def _notification(server: kmock.KubernetesEmulator) -> dict[str, Any]:
    found: dict[str, Any] = pipeline_status(server).get("notification") or {}
    return found


def _data_ready(server: kmock.KubernetesEmulator) -> tuple[str, str] | None:
    for condition in pipeline_status(server).get("conditions", []):
        if condition["type"] == "DataReady":
            return condition["status"], condition["reason"]
    return None


def _events(server: kmock.KubernetesEmulator, reason: str) -> list[dict[str, Any]]:
    return [event for event in posted_events(server) if event["reason"] == reason]


def _assert_url_nowhere(server: kmock.KubernetesEmulator, logs: str, receiver: Receiver) -> None:
    token = SECRET_PATH.rsplit("/", 1)[-1]
    said = json.dumps([posted_events(server), pipeline_status(server)]) + logs
    assert receiver.url not in said
    assert token not in said


async def test_retries_on_500_then_one_delivery_per_transition_and_none_after_restart(
    kmock: kmock.KubernetesEmulator,
    receiver: Receiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    _scene(kmock, receiver.url)
    receiver.answers = [(500, "oops"), (503, "busy")]
    async with running_operator(kmock, tmp_path, monkeypatch, memo=_memo()):
        await eventually(
            "the failure notified",
            lambda: _notification(kmock).get("delivered"),
            lambda: _notification(kmock),
        )
        # Two refused attempts, then one accepted: the same message three times, nothing else.
        assert [(body["state"], status) for body, status in receiver.received] == [
            ("Failing", 500),
            ("Failing", 503),
            ("Failing", 200),
        ]
        body = receiver.received[-1][0]
        assert (body["pipeline"], body["namespace"], body["reason"]) == (
            PIPELINE,
            NAMESPACE,
            "RunFailed",
        )
        assert body["runId"] == FAILED_JOB
        assert body["links"]["logs"] == f"kubectl logs job/{FAILED_JOB} -n {NAMESPACE}"
        assert "HTTPStatusError: 500 from the CRM" in body["message"]
        record = _notification(kmock)
        assert (record["state"], record["reason"], record["runId"]) == (
            "Failing",
            "RunFailed",
            FAILED_JOB,
        )
        await eventually("the Event", lambda: _events(kmock, "NotificationSent"))

    # The operator restarts; meanwhile the next run succeeded. The new process must not send
    # the failure again (status says it was sent), and sends the recovery once.
    await _recover(kmock)
    async with running_operator(kmock, tmp_path, monkeypatch, memo=_memo()):
        await eventually(
            "the recovery notified",
            lambda: _notification(kmock).get("state") == "Recovered",
            lambda: _notification(kmock),
        )
        assert receiver.accepted() == [("Failing", "RunFailed"), ("Recovered", "RunSucceeded")]
        assert receiver.received[-1][0]["previousReason"] == "RunFailed"
        await eventually("the Event", lambda: len(_events(kmock, "NotificationSent")) == 2)
    assert len(receiver.received) == 4
    _assert_url_nowhere(kmock, caplog.text, receiver)


async def test_a_refusing_receiver_shows_in_an_event_and_a_log_line_never_the_url(
    kmock: kmock.KubernetesEmulator,
    receiver: Receiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    _scene(kmock, receiver.url)
    # Slack's answer to a revoked webhook; the body echoes the URL, which must not pass on.
    receiver.answers = [(404, f"no_service {receiver.url}")]
    failed_before = metrics.NOTIFICATIONS.labels(result="failed")._value.get()
    async with running_operator(kmock, tmp_path, monkeypatch, memo=_memo("slack")):
        events = await eventually(
            "a NotificationFailed Event", lambda: _events(kmock, "NotificationFailed")
        )
        await eventually("the record", lambda: "delivered" in _notification(kmock))
    assert len(receiver.received) == 1, "a 404 is not retried"
    assert "blocks" in receiver.received[0][0]  # the Slack payload
    (event,) = events
    assert event["type"] == "Warning"
    assert "HTTP 404: no_service ***" in event["message"]
    record = _notification(kmock)
    assert record["delivered"] is False and "HTTP 404" in record["message"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("not delivered: the receiver answered HTTP 404" in w for w in warnings), warnings
    assert metrics.NOTIFICATIONS.labels(result="failed")._value.get() == failed_before + 1
    _assert_url_nowhere(kmock, caplog.text, receiver)


async def test_a_hanging_receiver_holds_back_no_status_and_order_is_kept(
    kmock: kmock.KubernetesEmulator,
    receiver: Receiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _scene(kmock, receiver.url)
    receiver.hold = asyncio.Event()
    async with running_operator(kmock, tmp_path, monkeypatch, memo=_memo(timeout=300)):
        await eventually("status RunFailed", lambda: _data_ready(kmock) == ("False", "RunFailed"))
        # The receiver has not answered the failure; the recovery still reaches status.
        await _recover(kmock)
        await eventually(
            "status RunSucceeded while the receiver hangs",
            lambda: _data_ready(kmock) == ("True", "RunSucceeded"),
            lambda: pipeline_status(kmock),
        )
        assert receiver.received == [] and _notification(kmock) == {}
        receiver.hold.set()
        await eventually(
            "both notified",
            lambda: _notification(kmock).get("state") == "Recovered",
            lambda: _notification(kmock),
        )
    assert receiver.accepted() == [("Failing", "RunFailed"), ("Recovered", "RunSucceeded")]
