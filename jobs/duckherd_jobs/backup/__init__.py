"""Backup and restore of the warehouse (`duckherd job backup|restore`, `duckherd backup`,
`duckherd restore`): see tasks.py and docs/backup.md."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from duckherd.errors import PipelineError, describe
from duckherd.status import rfc3339
from duckherd.summary import TaskSummary, encode_task
from duckherd_jobs.backup.destinations import BackupError
from duckherd_jobs.backup.tasks import LATEST, TaskContext, list_backups, run_backup, run_restore
from duckherd_jobs.context import utc_now
from duckherd_jobs.redaction import redact, redacted_logs, stage_secrets
from duckherd_jobs.runner import (
    ManifestError,
    configure_logging,
    load_manifest,
    write_termination_message,
)

log = logging.getLogger("duckherd.jobs.backup")

__all__ = [
    "LATEST",
    "BackupError",
    "TaskContext",
    "list_backups",
    "run_backup",
    "run_restore",
    "run_task",
    "run_task_cli",
]


def run_task(task: str, ctx: TaskContext, backup_id: str | None = None) -> TaskSummary:
    """Run a backup or a restore to a summary; never raises for a failure."""
    started = rfc3339(utc_now())
    secrets = stage_secrets(ctx.pipeline, task, ctx.env)
    action: Callable[[], TaskSummary]
    if task == "backup":
        action = lambda: run_backup(ctx)  # noqa: E731
    else:
        action = lambda: run_restore(ctx, backup_id or "")  # noqa: E731
    with redacted_logs(secrets):
        try:
            if task == "restore" and not backup_id:
                raise BackupError("no backup id given: name one (or `latest`)")
            summary = action()
        except PipelineError as error:
            log.debug("%s failed", task, exc_info=True)
            summary = TaskSummary(task=task, ok=False, error=describe(error))
        except Exception as error:  # a bug in Duckherd: the traceback is what a fix needs
            log.exception("%s failed with an unexpected error", task)
            summary = TaskSummary(task=task, ok=False, error=describe(error))
    if summary.error:
        summary.error = redact(summary.error, secrets)
    summary.startedAt = summary.startedAt or started
    summary.finishedAt = summary.finishedAt or rfc3339(utc_now())
    return summary


def run_task_cli(
    task: str,
    *,
    spec_path: Path,
    warehouse: Path,
    backup_dir: Path,
    termination_log: Path,
    backup_id: str | None,
    verbose: bool = False,
) -> int:
    """`duckherd job backup|restore` in a pod: the summary to the termination log and stdout."""
    configure_logging(level=logging.INFO, verbose=verbose)
    try:
        pipeline = load_manifest(spec_path)
    except ManifestError as error:
        summary = TaskSummary(task=task, ok=False, error=str(error))
    else:
        ctx = TaskContext(pipeline=pipeline, warehouse=warehouse, backup_dir=backup_dir)
        summary = run_task(task, ctx, backup_id)
    if not summary.ok:
        log.error("%s failed: %s", task, summary.error)
    write_termination_message(encode_task(summary), termination_log)
    return 0 if summary.ok else 1
