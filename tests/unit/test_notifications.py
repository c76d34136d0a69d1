"""Webhook notifications, the pure part: which transitions are due, and the payloads (golden).

Statuses come from the real `compute_status` over a run history, as the operator writes them;
`status.notification` is carried as the notifier records it.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from duckherd.api import DataPipelineSpec, DataPipelineStatus
from duckherd.status import RunObservation, StageObservation, compute_status
from duckherd.summary import StageSummary, TableSummary
from duckherd_operator.notifications import (
    Transition,
    build_json_payload,
    build_payload,
    build_slack_payload,
    due_transition,
    notified,
)
from tests.unit.manifests import spec

GOLDEN = Path(__file__).parent / "golden"
NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
# Ingest only, stale after a day.
SPEC = DataPipelineSpec.model_validate(
    {
        **spec(),
        "transform": None,
        "quality": None,
        "publish": [],
        "freshness": {"warnAfter": "12h", "errorAfter": "24h"},
    }
)


def ingest(run_id: str, ok: bool, at: datetime) -> RunObservation:
    when = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    summary = StageSummary(
        stage="ingest",
        ok=ok,
        tables={"raw.customers": TableSummary(rows=100, loaded=10, loadedAt=when)} if ok else {},
        finishedAt=when,
        error=None if ok else "HTTPStatusError: 500 <Internal Server Error> from the CRM API",
    )
    stage = StageObservation(
        stage="ingest",
        job=f"{run_id}-job",
        state="Succeeded" if ok else "Failed",
        completion_time=when,
        summary=summary,
    )
    return RunObservation(run_id=run_id, trigger="Schedule", stages=(stage,))


class History:
    """A pipeline's status through runs and time, and what a notifier sends along the way
    (recording each notification in status as webhook.py does)."""

    def __init__(self) -> None:
        self.status = DataPipelineStatus()
        self.sent: list[Transition] = []

    def step(self, run: RunObservation | None, now: datetime) -> Transition | None:
        self.status = compute_status(
            spec=SPEC, generation=1, previous=self.status, run=run, now=now
        )
        transition = due_transition("team-a", "shop", self.status, notified(self.status), now)
        if transition is not None:
            self.sent.append(transition)
            self.status.notification = transition.record(delivered=True)
        return transition


def test_one_message_per_transition_one_on_recovery_none_on_repeat() -> None:
    history = History()
    assert history.step(ingest("r1", True, NOW), NOW) is None  # first success: nothing to say
    failed = history.step(ingest("r2", False, NOW), NOW)
    assert failed is not None
    assert (failed.state, failed.reason, failed.run_id) == ("Failing", "RunFailed", "r2")
    assert failed.failed_job == "r2-job"
    assert history.step(ingest("r2", False, NOW), NOW + timedelta(minutes=1)) is None  # repeat
    assert history.step(ingest("r3", False, NOW), NOW) is None  # another failed run, same fault
    recovered = history.step(ingest("r4", True, NOW), NOW)
    assert recovered is not None
    assert (recovered.state, recovered.reason, recovered.run_id) == (
        "Recovered",
        "RunSucceeded",
        "r4",
    )
    assert recovered.previous_reason == "RunFailed"
    assert history.step(None, NOW + timedelta(minutes=5)) is None  # still good: nothing
    assert [t.key for t in history.sent] == [
        ("Failing", "RunFailed"),
        ("Recovered", "RunSucceeded"),
    ]


def test_stale_data_is_a_transition_and_a_new_load_recovers() -> None:
    history = History()
    history.step(ingest("r1", True, NOW), NOW)
    assert history.step(None, NOW + timedelta(hours=13)) is None  # warn only: no message
    stale = history.step(None, NOW + timedelta(hours=25))
    assert stale is not None and (stale.state, stale.reason, stale.run_id) == (
        "Failing",
        "Stale",
        "r1",
    )
    assert stale.failed_job is None
    assert history.step(None, NOW + timedelta(hours=26)) is None
    later = NOW + timedelta(hours=27)
    recovered = history.step(ingest("r2", True, later), later)
    assert recovered is not None and recovered.previous_reason == "Stale"


def test_a_new_fault_after_another_is_a_new_transition() -> None:
    history = History()
    history.step(ingest("r1", True, NOW), NOW)
    assert history.step(None, NOW + timedelta(hours=25)) is not None  # Stale
    failed = history.step(ingest("r2", False, NOW + timedelta(hours=26)), NOW + timedelta(hours=26))
    assert failed is not None and failed.reason == "RunFailed"


def test_no_run_yet_is_no_fault_and_a_first_failure_is() -> None:
    history = History()
    assert history.step(None, NOW) is None  # AwaitingFirstRun
    failed = history.step(ingest("r1", False, NOW), NOW)
    assert failed is not None and failed.reason == "RunFailed"


def test_nothing_after_a_restart_thanks_to_status() -> None:
    """A new notifier knows only what status says: the recorded state is not sent again."""
    history = History()
    history.step(ingest("r1", True, NOW), NOW)
    history.step(ingest("r2", False, NOW), NOW)
    stored = DataPipelineStatus.model_validate(history.status.model_dump(mode="json"))
    assert due_transition("team-a", "shop", stored, notified(stored), NOW) is None
    # Without the record (notifications just switched on), the fault is sent once.
    stored.notification = None
    assert due_transition("team-a", "shop", stored, notified(stored), NOW) is not None


def test_a_failed_delivery_is_recorded_and_not_retried_for_the_same_state() -> None:
    history = History()
    history.step(ingest("r1", False, NOW), NOW)
    assert history.status.notification is not None
    history.status.notification = history.sent[0].record(
        delivered=False, error="the receiver answered HTTP 404"
    )
    assert history.step(ingest("r1", False, NOW), NOW) is None
    assert history.step(ingest("r2", True, NOW), NOW) is not None  # recovery still goes out


# --------------------------------------------------------------------------- payloads

FAILING = Transition(
    namespace="team-a",
    pipeline="customer-analytics",
    state="Failing",
    reason="RunFailed",
    message="run r2: ingest: HTTPStatusError: 500 <Internal Server Error> & more",
    run_id="r2",
    time="2026-11-26T08:00:00Z",
    failed_job="customer-analytics-ingest-r2",
)
RECOVERED = Transition(
    namespace="team-a",
    pipeline="customer-analytics",
    state="Recovered",
    reason="RunSucceeded",
    message="last successful run r3",
    run_id="r3",
    time="2026-11-26T09:00:00Z",
    previous_reason="RunFailed",
)


def _check_golden(name: str, payloads: list[dict[str, object]]) -> None:
    text = json.dumps(payloads, indent=2, sort_keys=True) + "\n"
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.read_text() == text, f"{name} drifted; UPDATE_GOLDEN=1 rewrites it after review"


def test_json_payloads_match_golden() -> None:
    _check_golden("notification-json.json", [build_json_payload(t) for t in (FAILING, RECOVERED)])


def test_slack_payloads_match_golden() -> None:
    _check_golden("notification-slack.json", [build_slack_payload(t) for t in (FAILING, RECOVERED)])


@pytest.mark.parametrize("filler", ["x", "&", "<>"])
def test_slack_text_is_escaped_and_bounded(filler: str) -> None:
    long = Transition(**{**FAILING.__dict__, "message": "<!channel> " + filler * 5000})
    payload = build_slack_payload(long)
    section = payload["blocks"][0]["text"]["text"]
    assert "<!channel>" not in json.dumps(payload)
    assert "&lt;!channel&gt;" in section
    assert len(section) <= 3000  # Block Kit's limit for a section's text
    assert section.endswith(("x…", "&amp;…", "&lt;…", "&gt;…"))  # no entity cut in half
    assert len(build_json_payload(long)["message"]) == 2000


@pytest.mark.parametrize("format", ["slack", "json"])
def test_build_payload_follows_the_format(format: str) -> None:
    payload = build_payload(FAILING, format)  # type: ignore[arg-type]
    assert ("blocks" in payload) == (format == "slack")
    assert ("runId" in payload) == (format == "json")
