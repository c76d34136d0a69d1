"""Webhook notifications, the pure part: when one is due, and what it says.

A notification is due when a pipeline's `DataReady` turns to a fault — the last run failed,
error checks failed, publish was blocked or failed, the data is stale — and once more when it
turns good again after one. What was last notified is kept in `status.notification`, so
neither a repeat of the same state nor a restarted operator sends anything new. Delivery
(the Secret, retries, Events) is webhook.py; golden tests pin the payloads built here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from duckherd.api import DataPipelineStatus, NotificationStatus
from duckherd.status import DATA_READY, get_condition, rfc3339

Format = Literal["slack", "json"]
FORMATS: tuple[Format, ...] = ("slack", "json")
State = Literal["Failing", "Recovered"]
# DataReady=False reasons that are faults (not "no run yet"): each is a transition to notify.
FAILING_REASONS = ("RunFailed", "ChecksFailed", "PublishBlocked", "PublishFailed", "Stale")
# What the receiver gets is bounded: a failed stage's message can be long.
MAX_MESSAGE_CHARS = 2000
PAYLOAD_VERSION = 1

# (state, reason) of a notification: what de-duplication compares.
Notified = tuple[str, str]


@dataclass(frozen=True)
class Transition:
    """One notification: a pipeline's data health turned bad, or good again."""

    namespace: str
    pipeline: str
    state: State
    reason: str
    message: str
    run_id: str | None
    time: str
    previous_reason: str | None = None  # on recovery: what it recovered from
    failed_job: str | None = None  # the stage Job whose logs tell more

    @property
    def key(self) -> Notified:
        return (self.state, self.reason)

    def record(self, *, delivered: bool, error: str | None = None) -> NotificationStatus:
        """What status.notification keeps of it."""
        return NotificationStatus(
            state=self.state,
            reason=self.reason,
            runId=self.run_id,
            time=self.time,
            delivered=delivered,
            message=error,
        )


def notified(status: DataPipelineStatus) -> Notified | None:
    """What status says was last notified."""
    last = status.notification
    return (last.state, last.reason) if last is not None else None


def _failed_job(status: DataPipelineStatus) -> str | None:
    run = status.lastRun
    stage = (
        next((s for s in run.stages if s.result in ("Failed", "Blocked")), None) if run else None
    )
    return stage.job if stage is not None else None


def due_transition(
    namespace: str,
    name: str,
    status: DataPipelineStatus,
    last: Notified | None,
    now: datetime,
) -> Transition | None:
    """The notification `status` calls for after `last`, or None.

    Failing once per fault reason (a second failed run with the same reason sends nothing);
    Recovered once, only after a Failing one. "No run yet" is no fault and sends nothing."""
    data = get_condition(status.conditions, DATA_READY)
    if data is None:
        return None
    said = {"namespace": namespace, "pipeline": name, "reason": data.reason, "time": rfc3339(now)}
    if data.status == "False" and data.reason in FAILING_REASONS:
        if last == ("Failing", data.reason):
            return None
        stale = data.reason == "Stale"
        run = status.lastSuccessfulRun if stale else status.lastRun
        failed_job = None if stale else _failed_job(status)
        return Transition(
            **said,
            state="Failing",
            message=data.message,
            run_id=run.id if run else None,
            failed_job=failed_job,
        )
    if data.status == "True" and last is not None and last[0] == "Failing":
        run = status.lastSuccessfulRun
        return Transition(
            **said,
            state="Recovered",
            message=data.message,
            run_id=run.id if run else None,
            previous_reason=last[1],
        )
    return None


# --------------------------------------------------------------------------- payloads


def _bounded(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def link_hints(transition: Transition) -> dict[str, str]:
    """Commands that show more: the pipeline's status and Events, the failed stage's logs."""
    where = f"-n {transition.namespace}"
    hints = {"describe": f"kubectl describe datapipeline {transition.pipeline} {where}"}
    if transition.failed_job:
        hints["logs"] = f"kubectl logs job/{transition.failed_job} {where}"
    return hints


def build_json_payload(transition: Transition) -> dict[str, Any]:
    """The plain JSON body, for any receiver that is not Slack."""
    return {
        "version": PAYLOAD_VERSION,
        "pipeline": transition.pipeline,
        "namespace": transition.namespace,
        "state": transition.state,
        "reason": transition.reason,
        "message": _bounded(transition.message),
        "runId": transition.run_id,
        "time": transition.time,
        "previousReason": transition.previous_reason,
        "links": link_hints(transition),
    }


# Slack reads `&`, `<` and `>` as markup (`<!channel>` would ping a whole channel).
_SLACK_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
# Block Kit's limit for a section's text is 3000 characters; the headline takes some.
SLACK_MESSAGE_CHARS = 2800


def _slack_escape(text: str, limit: int = SLACK_MESSAGE_CHARS) -> str:
    """`text` escaped for Slack, at most `limit` characters once escaped (an entity is never
    cut in half)."""
    pieces: list[str] = []
    size = 0
    for char in text:
        piece = _SLACK_ESCAPES.get(char, char)
        if size + len(piece) > limit - 1:
            pieces.append("…")
            break
        pieces.append(piece)
        size += len(piece)
    return "".join(pieces)


def _headline(transition: Transition) -> str:
    where = f"{transition.namespace}/{transition.pipeline}"
    if transition.state == "Failing":
        return f":red_circle: DataPipeline {where} is failing: {transition.reason}"
    return f":large_green_circle: DataPipeline {where} recovered (was {transition.previous_reason})"


def build_slack_payload(transition: Transition) -> dict[str, Any]:
    """A Slack incoming-webhook message: `text` (the notification's fallback) and blocks.

    Every text from the pipeline is escaped, and stays below Block Kit's limits."""
    headline = _slack_escape(_headline(transition))
    message = _slack_escape(transition.message)
    fields = [
        {"type": "mrkdwn", "text": f"*Run*\n{_slack_escape(transition.run_id or '-')}"},
        {"type": "mrkdwn", "text": f"*Time*\n{transition.time}"},
    ]
    hints = "\n".join(f"`{_slack_escape(hint)}`" for hint in link_hints(transition).values())
    return {
        "text": headline,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{headline}*\n{message}"}},
            {"type": "section", "fields": fields},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": hints}]},
        ],
    }


def build_payload(transition: Transition, format: Format) -> dict[str, Any]:
    return build_slack_payload(transition) if format == "slack" else build_json_payload(transition)
