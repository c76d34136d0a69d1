"""Pure observation of the backup and restore Jobs: status.backups and status.restore.

Backup Jobs come from the `<name>-backup` CronJob; restore Jobs from the duckherd.io/restore
annotation. Both carry the label duckherd.io/stage (backup, restore) and report a
`TaskSummary` in their termination message, as stage Jobs report a StageSummary. A finished
Job whose Pod is gone keeps what status already recorded for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from duckherd.api import BackupsStatus, BackupStatus, RestoreStatus
from duckherd.contract import ANNOTATION_BACKUP_ID, LABEL_STAGE
from duckherd.summary import SummaryError, TaskSummary, decode_task
from duckherd_operator.chain import job_state
from duckherd_operator.observe import no_summary_message, terminated_state, waiting_problem

_OPEN = ("Pending", "Running")


def task_jobs(jobs: Iterable[dict[str, Any]], task: str) -> list[dict[str, Any]]:
    """The Jobs of one task, oldest first."""
    found = [j for j in jobs if (j["metadata"].get("labels") or {}).get(LABEL_STAGE) == task]
    return sorted(found, key=lambda j: (j["metadata"].get("creationTimestamp") or "", _name(j)))


def task_active(jobs: Iterable[dict[str, Any]], task: str) -> bool:
    return any(job_state(j.get("status") or {}) in _OPEN for j in task_jobs(jobs, task))


def _name(job: dict[str, Any]) -> str:
    return str(job["metadata"]["name"])


def _summary(
    job: dict[str, Any], pods: Sequence[dict[str, Any]], task: str
) -> tuple[TaskSummary | None, str | None]:
    """The Job's summary, or why there is none (None, None: the pods are gone)."""
    finished = [(p, t) for p in pods if (t := terminated_state(p)) is not None]
    if not finished:
        return None, None
    finished.sort(key=lambda pt: pt[1].get("finishedAt") or "")
    pod, terminated = finished[-1]
    try:
        return decode_task(terminated.get("message"), task), None
    except SummaryError as error:
        return None, no_summary_message(pod, terminated, error)


def _pods_of(job: dict[str, Any], pods: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    name = _name(job)
    return [p for p in pods if (p["metadata"].get("labels") or {}).get("job-name") == name]


def _waiting(pods: Sequence[dict[str, Any]]) -> str | None:
    problems = [found.message for pod in pods if (found := waiting_problem(pod)) is not None]
    return problems[0] if problems else None


def backups_status(
    previous: BackupsStatus | None, jobs: Iterable[dict[str, Any]], pods: list[dict[str, Any]]
) -> BackupsStatus | None:
    """The backups as the newest backup Job listed them, and how that Job went."""
    found = task_jobs(jobs, "backup")
    if not found:
        return previous
    job = found[-1]
    name, state = _name(job), job_state(job.get("status") or {})
    current = (previous or BackupsStatus()).model_copy(deep=True)
    if state in _OPEN:
        own = _pods_of(job, pods)
        current.lastJob, current.lastResult, current.message = name, "Running", _waiting(own)
        return current
    summary, problem = _summary(job, _pods_of(job, pods), "backup")
    if summary is None and problem is None and current.lastJob == name:
        return previous  # the pod is gone; status already recorded this Job
    current.lastJob = name
    current.lastTime = (job.get("status") or {}).get("completionTime")
    if summary is not None and summary.ok and state == "Succeeded":
        current.lastResult, current.message = "Succeeded", None
        current.pruned = list(summary.pruned)
        current.items = [
            BackupStatus(
                id=r.id, time=r.time, sizeBytes=r.sizeBytes, runId=r.runId, location=r.location
            )
            for r in summary.backups
        ]
    else:
        current.lastResult = "Failed"
        current.message = (summary.error if summary else None) or problem or "no summary"
    return current


def restore_status(
    previous: RestoreStatus | None, jobs: Iterable[dict[str, Any]], pods: list[dict[str, Any]]
) -> RestoreStatus | None:
    """Where the newest restore is, and what it brought back."""
    found = task_jobs(jobs, "restore")
    if not found:
        return previous
    job = found[-1]
    name, status = _name(job), job.get("status") or {}
    state = job_state(status)
    backup_id = (job["metadata"].get("annotations") or {}).get(ANNOTATION_BACKUP_ID, "")
    result = RestoreStatus(
        backupId=backup_id,
        job=name,
        result="Running" if state == "Running" else "Pending",
        startTime=status.get("startTime"),
    )
    own = _pods_of(job, pods)
    if state in _OPEN:
        result.message = _waiting(own) or f"restoring backup {backup_id}"
        return result
    summary, problem = _summary(job, own, "restore")
    if summary is None and problem is None and previous is not None and previous.job == name:
        return previous
    result.completionTime = status.get("completionTime")
    if summary is not None and summary.ok and summary.backup is not None and state == "Succeeded":
        restored = summary.backup
        result.result, result.runId = "Succeeded", restored.runId
        result.message = (
            f"restored backup {restored.id} (taken {restored.time}); the next run continues "
            f"from its cursors (newest run {restored.runId or 'none'})"
        )
    else:
        result.result = "Failed"
        result.message = (summary.error if summary else None) or problem or "no summary"
    return result
