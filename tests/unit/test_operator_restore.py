"""The restore annotation through the real operator (Kopf, handlers, client) on kmock: the
restore Job is created, the annotation consumed, run-now held while it runs, and its result
reported in status.restore and an Event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kmock
import pytest

from duckherd.summary import BackupRecord, TaskSummary
from tests.unit.manifests import spec
from tests.unit.operator_harness import (
    NAMESPACE,
    PIPELINE,
    eventually,
    objects_of,
    pipeline_status,
    posted_events,
    put,
    put_pipeline_with_children,
    running_operator,
)

BACKUP_ID = "20261202t070000-000001"
RECORD = BackupRecord(
    id=BACKUP_ID, time="2026-12-02T07:00:00Z", sizeBytes=4096, runId="run-1", location="/b"
)


def _restore_jobs(server: kmock.KubernetesEmulator) -> dict[str, dict[str, Any]]:
    return {
        name: job
        for name, job in objects_of(server, "batch/v1/jobs").items()
        if job["metadata"]["labels"].get("duckherd.io/stage") == "restore"
    }


def _annotations(server: kmock.KubernetesEmulator) -> dict[str, str]:
    body = objects_of(server, "duckherd.io/v1alpha1/datapipelines")[PIPELINE]
    return dict(body["metadata"].get("annotations") or {})


async def test_the_restore_annotation_starts_a_job_and_reports_its_result(
    kmock: kmock.KubernetesEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = put_pipeline_with_children(kmock, spec(backup={"schedule": "0 7 * * *", "volume": {}}))
    body["metadata"]["annotations"] = {"duckherd.io/restore": BACKUP_ID}
    put(kmock, body)

    async with running_operator(kmock, tmp_path, monkeypatch):
        jobs = await eventually("the restore Job", lambda: _restore_jobs(kmock))
        [(name, job)] = jobs.items()
        assert job["metadata"]["annotations"]["duckherd.io/backup-id"] == BACKUP_ID
        env = job["spec"]["template"]["spec"]["containers"][0]["env"]
        assert {"name": "DUCKHERD_BACKUP_ID", "value": BACKUP_ID} in env
        await eventually(
            "the annotation consumed", lambda: "duckherd.io/restore" not in _annotations(kmock)
        )
        await eventually(
            "a RestoreStarted Event",
            lambda: any(e["reason"] == "RestoreStarted" for e in posted_events(kmock)),
        )

        summary = TaskSummary(task="restore", ok=True, backup=RECORD)
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{name}-x",
                "namespace": NAMESPACE,
                "labels": {
                    "job-name": name,
                    "app.kubernetes.io/managed-by": "duckherd",
                    "duckherd.io/pipeline": PIPELINE,
                },
            },
            "status": {
                "containerStatuses": [
                    {"state": {"terminated": {"exitCode": 0, "message": summary.model_dump_json()}}}
                ]
            },
        }
        await kmock.post(f"/api/v1/namespaces/{NAMESPACE}/pods", json=pod)
        finished = {
            "startTime": "2026-12-02T08:00:00Z",
            "completionTime": "2026-12-02T08:00:05Z",
            "conditions": [{"type": "Complete", "status": "True"}],
        }
        await kmock.patch(
            f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{name}", json={**job, "status": finished}
        )
        restore = await eventually(
            "status.restore Succeeded",
            lambda: (
                (pipeline_status(kmock).get("restore") or {}).get("result") == "Succeeded"
                and pipeline_status(kmock)["restore"]
            ),
            lambda: pipeline_status(kmock).get("restore"),
        )
        assert (restore["backupId"], restore["job"], restore["runId"]) == (BACKUP_ID, name, "run-1")
        await eventually(
            "a RestoreSucceeded Event",
            lambda: any(e["reason"] == "RestoreSucceeded" for e in posted_events(kmock)),
        )
