"""Bucket backups against a real S3-compatible server (SeaweedFS): backup, list, prune, restore
with the cursors, and the S3 error named in one line."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from duckherd_jobs.backup import TaskContext, run_task
from tests.jobs.backup_support import count, cursors, customer, differences, moved_on, run, shop
from tests.jobs.ingest_support import FakeApi
from tests.s3.conftest import S3Server


def bucket_backup(s3: S3Server, bucket: str) -> dict[str, Any]:
    return {
        "schedule": "0 7 * * *",
        "keep": 2,
        "s3": {
            "endpoint": s3.endpoint,
            "bucket": bucket,
            "prefix": "duckherd",
            "accessKeyIdSecretRef": {"name": "backup-s3", "key": "id"},
            "secretAccessKeySecretRef": {"name": "backup-s3", "key": "secret"},
        },
    }


def env(s3: S3Server, secret: str | None = None) -> dict[str, str]:
    return {
        "DUCKHERD_SECRET_BACKUP_S3_ID": s3.access_key,
        "DUCKHERD_SECRET_BACKUP_S3_SECRET": secret or s3.secret_key,
    }


def test_bucket_backup_prune_and_restore_go_on_from_the_cursors(
    s3: S3Server, tmp_path: Path
) -> None:
    bucket = f"backups-{uuid.uuid4().hex[:8]}"
    s3.client().create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    first = [customer(number, day=1) for number in range(1, 101)]
    with FakeApi(first) as api:
        pipeline = shop(api.url, transform=False, backup=bucket_backup(s3, bucket))
        reference = tmp_path / "reference.duckdb"
        restored = tmp_path / "restored.duckdb"
        run(pipeline, reference, "run-1")
        ctx = TaskContext(pipeline, reference, tmp_path / "unused", env=env(s3))
        made = [run_task("backup", ctx) for _ in range(3)]
        assert all(summary.ok for summary in made), [summary.error for summary in made]
        ids = [summary.backup.id for summary in made if summary.backup]
        assert made[-1].pruned == [ids[0]] and [b.id for b in made[-1].backups] == ids[:0:-1]
        keys = [
            item["Key"]
            for item in s3.client().list_objects_v2(Bucket=bucket)["Contents"]  # type: ignore[attr-defined]
        ]
        assert sorted(keys) == sorted(
            f"duckherd/default/shop/{i}/{name}"
            for i in ids[1:]
            for name in ("warehouse.duckdb", "backup.json")
        )
        newest = made[-1].backup
        assert newest is not None
        assert newest.location == f"s3://{bucket}/duckherd/default/shop/{ids[2]}/"

        api.state.records = moved_on(first, updated=5, added=10, day=2)
        reference_runs = run(pipeline, reference, "run-2")
        back = run_task("restore", replace(ctx, warehouse=restored), "latest")
        assert back.ok, back.error
        restored_runs = run(pipeline, restored, "run-2")
    assert restored_runs[0].tables["raw.customers"].loaded == 15
    assert reference_runs[0].tables["raw.customers"].loaded == 15
    assert differences(restored, reference, skip_schemas=("_duckherd",)) == {}
    assert cursors(restored) == cursors(reference) and count(restored, "raw.customers") == 110


def test_a_wrong_secret_or_bucket_is_named_in_one_line(s3: S3Server, tmp_path: Path) -> None:
    with FakeApi([customer(number, day=1) for number in range(1, 11)]) as api:
        pipeline = shop(api.url, transform=False, backup=bucket_backup(s3, "no-such-bucket"))
        warehouse = tmp_path / "warehouse.duckdb"
        run(pipeline, warehouse, "run-1")
    missing = run_task("backup", TaskContext(pipeline, warehouse, tmp_path, env=env(s3)))
    assert missing.error is not None and "NoSuchBucket" in missing.error
    assert "\n" not in missing.error and s3.secret_key not in missing.error
    wrong = run_task("backup", TaskContext(pipeline, warehouse, tmp_path, env=env(s3, "nope")))
    assert wrong.error is not None
    assert wrong.error.startswith("upload of backup ") and "SignatureDoesNotMatch" in wrong.error
