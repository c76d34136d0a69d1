"""Webhook notifications on the real cluster, configured through the chart as a user would.

A webhook receiver runs in this process on the address at which pods reach this machine (as
the demo API does for stage pods); its URL sits in the Secret the chart names. One small
ingest-only pipeline fails (its source answers 500), recovers (the demo API), and the operator
restarts: exactly one Failing and one Recovered message, and nothing more after the restart.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from duckherd_jobs.demo_source import DemoSource
from tests.e2e.conftest import Cluster, kubectl, wait_until
from tests.e2e.operator_support import (
    REACTION_TIMEOUT,
    Operator,
    apply_manifest,
    apply_secret,
    can_i,
    events_for,
    get_pipeline,
    installed_operator,
    load_example,
    serving,
    wait_run_finished,
)

pytestmark = pytest.mark.e2e

NAME = "notified"
CUSTOMERS = 50  # served by the demo API (the conftest's demo_api)
SECRET = "e2e-webhook"
TOKEN = uuid.uuid4().hex  # the URL's secret part, as in a Slack webhook's path
# After the restarted operator has looked at the pipeline, how long nothing may arrive. A
# message is queued while Kopf handles the pipeline's first event and sent within
# milliseconds; this window only has to cover a slow machine.
QUIET_AFTER_RESTART_SECONDS = 20.0


class _Receiver(BaseHTTPRequestHandler):
    """POST /hooks/<TOKEN>: a webhook that records what it gets. GET: a source that fails."""

    received: list[dict[str, Any]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != f"/hooks/{TOKEN}":
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        with self.lock:
            self.received.append(body)
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.send_error(HTTPStatus.INTERNAL_SERVER_ERROR, "the CRM is down")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def receiver(cluster: Cluster) -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Receiver", (_Receiver,), {"received": [], "lock": threading.Lock()})
    with serving(handler, cluster.need_host_ip()) as url:
        yield url, handler


@pytest.fixture(scope="module")
def operator(cluster: Cluster, watched_namespace: str) -> Iterator[Operator]:
    """Watching only the test's namespace: its start-up log then speaks of our pipeline."""
    values = (
        f"watchNamespaces={{{watched_namespace}}}",
        f"notifications.webhook.secretName={SECRET}",
        "notifications.webhook.format=json",
    )
    with installed_operator(cluster, values=values) as installed:
        yield installed


def _pipeline(api: str) -> dict[str, Any]:
    """The example reduced to its customers source (read from `api`), with no retries and no
    other stage: one pod per run."""
    example = load_example(api)
    (customers,) = [s for s in example["spec"]["sources"] if s["name"] == "customers"]
    customers["http"]["maxRetries"] = 0
    kept = {key: example["spec"][key] for key in ("schedule", "timeZone", "freshness")}
    return {**example, "metadata": {"name": NAME}, "spec": {**kept, "sources": [customers]}}


def _run_now(namespace: str) -> str:
    """Start a manual run; its id is the ingest Job's name."""
    before = _jobs(namespace)
    value = uuid.uuid4().hex
    kubectl(
        "annotate",
        "datapipeline",
        NAME,
        "-n",
        namespace,
        f"duckherd.io/run-now={value}",
        "--overwrite",
    )
    started: set[str] = wait_until(
        "the manual run's Job", lambda: _jobs(namespace) - before, timeout=REACTION_TIMEOUT
    )
    (job,) = started
    return job


def _jobs(namespace: str) -> set[str]:
    out = kubectl("get", "jobs", "-n", namespace, "-o", "name", check=False)
    return {line.removeprefix("job.batch/") for line in out.split()}


def _messages(handler: type[_Receiver]) -> list[tuple[str, str, str]]:
    with handler.lock:
        return [(m["state"], m["reason"], m["runId"]) for m in handler.received]


def test_one_message_per_transition_and_none_after_a_restart(
    operator: Operator,
    receiver: tuple[str, type[_Receiver]],
    demo_api: DemoSource,
    watched_namespace: str,
) -> None:
    base, handler = receiver
    ns = watched_namespace
    # The operator may read this one Secret, by name, and no other; it may list none.
    account = operator.service_account
    assert can_i(account, "get", f"secret/{SECRET}", operator.namespace)
    assert not can_i(account, "get", "secret/another", operator.namespace)
    assert not can_i(account, "list", "secrets", operator.namespace)
    assert not can_i(account, "watch", "secrets", operator.namespace)
    apply_secret(operator.namespace, SECRET, {"url": f"{base}/hooks/{TOKEN}"})

    # A run whose source answers 500: one Failing message.
    apply_manifest(_pipeline(base), ns)
    failed_run = _run_now(ns)
    assert wait_run_finished(ns, NAME, failed_run)["status"]["lastRun"]["result"] == "Failed"
    wait_until("the failure notified", lambda: _messages(handler), timeout=REACTION_TIMEOUT)

    # The source is back: one Recovered message.
    apply_manifest(_pipeline(demo_api.url), ns)
    good_run = _run_now(ns)
    assert wait_run_finished(ns, NAME, good_run)["status"]["lastRun"]["result"] == "Succeeded"
    wait_until(
        "the recovery notified", lambda: len(_messages(handler)) >= 2, timeout=REACTION_TIMEOUT
    )
    expected = [("Failing", "RunFailed", failed_run), ("Recovered", "RunSucceeded", good_run)]
    assert _messages(handler) == expected

    # A restart: the new operator looks at the pipeline again (Kopf's resume of the one pipeline
    # it watches, which comes after the pipeline's first event) and sends nothing new.
    first_logs = operator.logs()
    operator.scale(0)
    operator.scale(1)
    wait_until(
        "the restarted operator resuming the pipeline",
        lambda: "Resuming is processed: 1 succeeded" in operator.logs(),
        timeout=REACTION_TIMEOUT,
    )
    with pytest.raises(TimeoutError):
        wait_until(
            "a message after the restart (none may come)",
            lambda: len(_messages(handler)) > 2,
            timeout=QUIET_AFTER_RESTART_SECONDS,
        )
    assert _messages(handler) == expected

    pipeline = get_pipeline(ns, NAME)
    record = pipeline["status"]["notification"]
    assert (record["state"], record["runId"], record["delivered"]) == ("Recovered", good_run, True)
    sent = [e for e in events_for(ns, NAME) if e["reason"] == "NotificationSent"]
    assert len(sent) == 2, sent
    # The URL's secret part shows nowhere: status, Events, the operator's log.
    said = json.dumps([pipeline, events_for(ns, NAME)]) + first_logs + operator.logs()
    assert TOKEN not in said
    assert not [e for e in events_for(ns, NAME) if e["reason"] == "NotificationFailed"]
