"""What the operator tells people: the status patch and the Events of a transition.

Pure: actions.post_events writes what this module builds. Events are emitted only for
transitions (a stage or run result, the Ready condition), so a steady state is silent.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from duckherd.api import DataPipelineStatus, RunStatus
from duckherd.status import DATA_READY, NOT_YET_REASONS, READY, get_condition, rfc3339
from duckherd_operator.client import FIELD_MANAGER


@dataclass(frozen=True)
class Notice:
    """One Kubernetes Event about a pipeline."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


# Written by the notifier alone (webhook.py): a reconcile pass that read an older copy must not
# put it back, so its patches leave the key out (a merge patch keeps what it does not name).
NOTIFIER_OWNED = "notification"


def status_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch from the stored status to the new one (dropped keys become null)."""
    patch: dict[str, Any] = dict(new)
    for key in old:
        if key not in new:
            patch[key] = None
    patch.pop(NOTIFIER_OWNED, None)
    return patch


def _stage_notices(old: RunStatus | None, new: RunStatus | None) -> list[Notice]:
    seen = {(old.id, s.stage, s.result) for s in old.stages} if old else set()
    notices = []
    for stage in new.stages if new else []:
        if new is None or (new.id, stage.stage, stage.result) in seen:
            continue
        if stage.result == "Succeeded":
            message = f"{stage.stage} ({stage.job}) succeeded"
            notices.append(Notice("Normal", "StageSucceeded", message))
        elif stage.result == "Failed":
            message = f"{stage.stage} ({stage.job}): {stage.message}"
            notices.append(Notice("Warning", "StageFailed", message))
        elif stage.result == "Blocked":
            notices.append(Notice("Warning", "PublishBlocked", stage.message or "checks failed"))
    return notices


def _run_notices(old: RunStatus | None, new: RunStatus | None) -> list[Notice]:
    if new is None or new.result == "Running":
        return []
    if old is not None and (old.id, old.result) == (new.id, new.result):
        return []
    if new.result == "Succeeded":
        message = f"run {new.id} ({new.trigger.lower()}) succeeded"
        return [Notice("Normal", "RunSucceeded", message)]
    return [Notice("Warning", f"Run{new.result}", f"run {new.id}: {new.result.lower()}")]


def _condition_notices(type: str, old: DataPipelineStatus, new: DataPipelineStatus) -> list[Notice]:
    """Ready (deployment) and DataReady (data): Warning when one turns bad, with the cause."""
    before = get_condition(old.conditions, type)
    after = get_condition(new.conditions, type)
    if after is None or (
        before is not None and (before.status, before.reason) == (after.status, after.reason)
    ):
        return []
    normal = after.status == "True" or after.reason in NOT_YET_REASONS
    return [Notice("Normal" if normal else "Warning", after.reason, after.message)]


def _ended(before: tuple[object, ...] | None, after: tuple[object, ...]) -> bool:
    """A Job's result that is final and was not shown before."""
    return after[1] in ("Succeeded", "Failed") and before != after


def _task_notices(old: DataPipelineStatus, new: DataPipelineStatus) -> list[Notice]:
    """A backup Job or a restore that ended: once, when its result first shows."""
    notices = []
    before, after = old.backups, new.backups
    if after is not None and _ended(
        (before.lastJob, before.lastResult) if before else None, (after.lastJob, after.lastResult)
    ):
        if after.lastResult == "Succeeded" and after.items:
            newest = after.items[0]
            message = f"backup {newest.id} ({newest.sizeBytes} bytes) at {newest.location}"
            notices.append(Notice("Normal", "BackupSucceeded", message))
        elif after.lastResult == "Failed":
            message = f"backup Job {after.lastJob}: {after.message}"
            notices.append(Notice("Warning", "BackupFailed", message))
    was, now = old.restore, new.restore
    if now is not None and _ended((was.job, was.result) if was else None, (now.job, now.result)):
        kind: Literal["Normal", "Warning"] = "Normal" if now.result == "Succeeded" else "Warning"
        notices.append(Notice(kind, f"Restore{now.result}", now.message or now.result))
    return notices


def transition_notices(old: DataPipelineStatus, new: DataPipelineStatus) -> list[Notice]:
    """Events for transitions users care about (only on change: no spam at steady state)."""
    return [
        *_stage_notices(old.lastRun, new.lastRun),
        *_run_notices(old.lastRun, new.lastRun),
        *_condition_notices(READY, old, new),
        *_condition_notices(DATA_READY, old, new),
        *_task_notices(old, new),
    ]


# The API server rejects longer Event messages.
MAX_EVENT_MESSAGE = 1024


def event_manifest(body: dict[str, Any], notice: Notice, now: datetime) -> dict[str, Any]:
    """A core/v1 Event about the object `body`, named as client-go's recorder names them."""
    metadata = body["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{metadata['name']}.{int(now.timestamp() * 1e9):x}",
            "namespace": metadata["namespace"],
        },
        "involvedObject": {
            "apiVersion": body["apiVersion"],
            "kind": body["kind"],
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata["uid"],
        },
        "type": notice.type,
        "reason": notice.reason,
        "message": notice.message[:MAX_EVENT_MESSAGE],
        "source": {"component": FIELD_MANAGER},
        "reportingComponent": FIELD_MANAGER,
        "reportingInstance": socket.gethostname(),
        "firstTimestamp": rfc3339(now),
        "lastTimestamp": rfc3339(now),
        "count": 1,
    }
