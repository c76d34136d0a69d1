"""status.backups and status.restore from the backup and restore Jobs (pure), and their Events."""

from __future__ import annotations

from typing import Any

from duckherd.api import DataPipelineStatus
from duckherd.summary import BackupRecord, TaskSummary, encode_task
from duckherd_operator.report import transition_notices
from duckherd_operator.tasks import backups_status, restore_status, task_active

RECORD = BackupRecord(
    id="20261202t070000-000001",
    time="2026-12-02T07:00:00Z",
    sizeBytes=4096,
    runId="shop-ingest-1",
    location="/backups/analytics/shop/20261202t070000-000001",
)


def job(name: str, task: str, state: str, **annotations: str) -> dict[str, Any]:
    conditions = {
        "Succeeded": [{"type": "Complete", "status": "True"}],
        "Failed": [{"type": "Failed", "status": "True"}],
    }
    status: dict[str, Any] = {"startTime": "2026-12-02T07:00:00Z"}
    if state in conditions:
        status["conditions"] = conditions[state]
        status["completionTime"] = "2026-12-02T07:00:09Z"
    else:
        status["active"] = 1
    return {
        "metadata": {
            "name": name,
            "labels": {"duckherd.io/stage": task, "duckherd.io/pipeline": "shop"},
            "annotations": annotations,
            "creationTimestamp": f"2026-12-02T07:00:0{name[-1]}Z",
        },
        "status": status,
    }


def pod(job_name: str, summary: TaskSummary) -> dict[str, Any]:
    terminated = {"exitCode": 0 if summary.ok else 1, "message": encode_task(summary).decode()}
    return {
        "metadata": {"name": f"{job_name}-x", "labels": {"job-name": job_name}},
        "status": {"containerStatuses": [{"state": {"terminated": terminated}}]},
    }


def test_a_finished_backup_job_lists_the_backups_and_says_so_once() -> None:
    done = TaskSummary(task="backup", ok=True, backup=RECORD, backups=[RECORD], pruned=["old"])
    jobs = [job("shop-backup-1", "backup", "Succeeded")]
    status = backups_status(None, jobs, [pod("shop-backup-1", done)])
    assert status is not None and status.lastResult == "Succeeded"
    assert [item.id for item in status.items] == [RECORD.id] and status.pruned == ["old"]
    assert status.items[0].runId == "shop-ingest-1" and status.items[0].sizeBytes == 4096
    before, after = DataPipelineStatus(), DataPipelineStatus(backups=status)
    assert [n.reason for n in transition_notices(before, after)] == ["BackupSucceeded"]
    assert transition_notices(after, after) == []
    # The pod is gone (history limits): what status recorded stays.
    assert backups_status(status, jobs, []) == status


def test_a_failed_backup_keeps_the_list_and_tells_why() -> None:
    listed = backups_status(
        None,
        [job("shop-backup-1", "backup", "Succeeded")],
        [pod("shop-backup-1", TaskSummary(task="backup", ok=True, backups=[RECORD]))],
    )
    failed = TaskSummary(task="backup", ok=False, error="copying failed: No space left on device")
    jobs = [job("shop-backup-1", "backup", "Succeeded"), job("shop-backup-2", "backup", "Failed")]
    status = backups_status(listed, jobs, [pod("shop-backup-2", failed)])
    assert status is not None and status.lastResult == "Failed"
    assert status.message == "copying failed: No space left on device"
    assert [item.id for item in status.items] == [RECORD.id]
    notices = transition_notices(
        DataPipelineStatus(backups=listed), DataPipelineStatus(backups=status)
    )
    assert [(n.type, n.reason) for n in notices] == [("Warning", "BackupFailed")]


def test_a_restore_reports_progress_then_the_result_and_holds_the_chain() -> None:
    running = [job("shop-restore-1", "restore", "Running", **{"duckherd.io/backup-id": RECORD.id})]
    assert task_active(running, "restore")
    status = restore_status(None, running, [])
    assert status is not None and status.result == "Running" and status.backupId == RECORD.id
    done = [job("shop-restore-1", "restore", "Succeeded", **{"duckherd.io/backup-id": RECORD.id})]
    summary = TaskSummary(task="restore", ok=True, backup=RECORD)
    finished = restore_status(status, done, [pod("shop-restore-1", summary)])
    assert finished is not None and finished.result == "Succeeded"
    assert finished.runId == "shop-ingest-1" and not task_active(done, "restore")
    notices = transition_notices(
        DataPipelineStatus(restore=status), DataPipelineStatus(restore=finished)
    )
    assert [(n.type, n.reason) for n in notices] == [("Normal", "RestoreSucceeded")]
