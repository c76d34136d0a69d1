"""Where backups live: a directory (the backup volume) or an S3-compatible bucket.

A backup is a folder `<root>/<namespace>/<pipeline>/<id>/` holding `warehouse.duckdb` and
`backup.json` (a `BackupRecord`). `backup.json` is written last: a folder without it is an
unfinished upload, never listed nor restored. An id is the time to the microsecond, so
ids sort by time.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from duckherd.api import BackupBucket, DataPipeline
from duckherd.errors import PipelineError
from duckherd.summary import BackupRecord

DATA_FILE = "warehouse.duckdb"
RECORD_FILE = "backup.json"
# An unfinished folder this old is left over from a Job that died: pruned with the old backups.
STALE_PARTIAL_SECONDS = 3600.0


class BackupError(PipelineError, RuntimeError):
    """A backup or restore cannot go on; the message names the backup and the cause."""


class Destination(Protocol):
    """What the backup and restore tasks need of a place that keeps backups."""

    def location(self, backup_id: str) -> str: ...

    def staging_file(self, backup_id: str, scratch: Path) -> Path:
        """Where the snapshot is copied to first."""
        ...

    def commit(self, backup_id: str, staged: Path, record: BackupRecord) -> None:
        """Make the staged snapshot a listed backup (its record last)."""
        ...

    def records(self) -> list[BackupRecord]: ...

    def fetch(self, backup_id: str, target: Path) -> BackupRecord: ...

    def delete(self, backup_id: str) -> None: ...


def pipeline_folder(pipeline: DataPipeline) -> str:
    return f"{pipeline.metadata.namespace or 'default'}/{pipeline.metadata.name}"


def _record(text: bytes | str, where: str) -> BackupRecord:
    try:
        return BackupRecord.model_validate_json(text)
    except ValidationError as error:
        raise BackupError(f"{where}: not a backup record ({error.error_count()} errors)") from None


def newest_first(records: list[BackupRecord]) -> list[BackupRecord]:
    return sorted(records, key=lambda r: r.id, reverse=True)


class VolumeDestination:
    """Backups in a directory: the `spec.backup.volume` claim, or a local folder."""

    def __init__(self, root: Path, pipeline: DataPipeline) -> None:
        self.folder = root / pipeline_folder(pipeline)

    def location(self, backup_id: str) -> str:
        return str(self.folder / backup_id)

    def staging_file(self, backup_id: str, scratch: Path) -> Path:
        """On the backup volume itself, in a hidden folder: one copy, no detour."""
        partial = self._partial(backup_id)
        partial.mkdir(parents=True, exist_ok=True)
        return partial / DATA_FILE

    def commit(self, backup_id: str, staged: Path, record: BackupRecord) -> None:
        partial = self._partial(backup_id)
        if staged != partial / DATA_FILE:
            partial.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(staged, partial / DATA_FILE)
        (partial / RECORD_FILE).write_text(record.model_dump_json(exclude_none=True))
        _fsync_tree(partial)
        partial.rename(self.folder / backup_id)

    def _partial(self, backup_id: str) -> Path:
        return self.folder / f".{backup_id}.partial"

    def records(self) -> list[BackupRecord]:
        if not self.folder.is_dir():
            return []
        found = []
        for entry in self.folder.iterdir():
            record_file = entry / RECORD_FILE
            if entry.name.startswith(".") or not record_file.is_file():
                continue
            found.append(_record(record_file.read_bytes(), str(record_file)))
        return newest_first(found)

    def fetch(self, backup_id: str, target: Path) -> BackupRecord:
        folder = self.folder / backup_id
        if not (folder / RECORD_FILE).is_file():
            raise BackupError(f"backup {backup_id} not found in {self.folder}")
        record = _record((folder / RECORD_FILE).read_bytes(), str(folder / RECORD_FILE))
        shutil.copyfile(folder / DATA_FILE, target)
        return record

    def delete(self, backup_id: str) -> None:
        shutil.rmtree(self.folder / backup_id, ignore_errors=True)

    def remove_stale_partials(self) -> None:
        if not self.folder.is_dir():
            return
        for entry in self.folder.glob(".*.partial"):
            if time.time() - entry.stat().st_mtime > STALE_PARTIAL_SECONDS:
                shutil.rmtree(entry, ignore_errors=True)


def _fsync_tree(folder: Path) -> None:
    """The files and the folder reach the disk before the rename that lists the backup."""
    for path in [*folder.iterdir(), folder]:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


class BucketDestination:
    """Backups in an S3-compatible bucket, through boto3 (credentials from the Secret only)."""

    def __init__(self, bucket: BackupBucket, pipeline: DataPipeline, env: Mapping[str, str]):
        import boto3
        from botocore.config import Config

        self.spec = bucket
        folder = pipeline_folder(pipeline)
        self.prefix = f"{bucket.prefix}/{folder}" if bucket.prefix else folder
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=bucket.endpoint,
            region_name=bucket.region,
            aws_access_key_id=bucket.accessKeyIdSecretRef.resolve(env),
            aws_secret_access_key=bucket.secretAccessKeySecretRef.resolve(env),
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 5, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
            ),
        )

    def _key(self, backup_id: str, name: str) -> str:
        return f"{self.prefix}/{backup_id}/{name}"

    def location(self, backup_id: str) -> str:
        return f"s3://{self.spec.bucket}/{self.prefix}/{backup_id}/"

    def staging_file(self, backup_id: str, scratch: Path) -> Path:
        return scratch / DATA_FILE

    def commit(self, backup_id: str, staged: Path, record: BackupRecord) -> None:
        with self._errors(f"upload of backup {backup_id}"):
            self.client.upload_file(str(staged), self.spec.bucket, self._key(backup_id, DATA_FILE))
            self.client.put_object(
                Bucket=self.spec.bucket,
                Key=self._key(backup_id, RECORD_FILE),
                Body=record.model_dump_json(exclude_none=True).encode(),
                ContentType="application/json",
            )

    def records(self) -> list[BackupRecord]:
        found = []
        with self._errors("listing backups"):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.spec.bucket, Prefix=f"{self.prefix}/"):
                for item in page.get("Contents", []):
                    key = str(item["Key"])
                    if key.endswith(f"/{RECORD_FILE}"):
                        body = self.client.get_object(Bucket=self.spec.bucket, Key=key)["Body"]
                        found.append(_record(body.read(), f"s3://{self.spec.bucket}/{key}"))
        return newest_first(found)

    def fetch(self, backup_id: str, target: Path) -> BackupRecord:
        from botocore.exceptions import ClientError

        with self._errors(f"download of backup {backup_id}"):
            try:
                body = self.client.get_object(
                    Bucket=self.spec.bucket, Key=self._key(backup_id, RECORD_FILE)
                )["Body"].read()
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    raise BackupError(
                        f"backup {backup_id} not found in {self.location(backup_id)}"
                    ) from None
                raise
            record = _record(body, self.location(backup_id))
            self.client.download_file(
                self.spec.bucket, self._key(backup_id, DATA_FILE), str(target)
            )
        return record

    def delete(self, backup_id: str) -> None:
        with self._errors(f"deleting backup {backup_id}"):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(
                Bucket=self.spec.bucket, Prefix=f"{self.prefix}/{backup_id}/"
            ):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:
                    self.client.delete_objects(
                        Bucket=self.spec.bucket, Delete={"Objects": keys, "Quiet": True}
                    )

    def _errors(self, what: str) -> AbstractContextManager[None]:
        return _bucket_errors(f"{what} at {self.spec.endpoint} (bucket {self.spec.bucket})")


@contextmanager
def _bucket_errors(where: str) -> Iterator[None]:
    """botocore's exceptions as one line naming the endpoint, the bucket and the S3 error."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as error:
        detail = error.response.get("Error", {})
        cause = f"{detail.get('Code', 'error')}: {detail.get('Message', '')}".rstrip(": ")
        raise BackupError(f"{where}: {cause}") from None
    except (BotoCoreError, S3UploadFailedError) as error:
        raise BackupError(f"{where}: {error}") from None


def destination_for(
    pipeline: DataPipeline, env: Mapping[str, str], backup_dir: Path
) -> Destination:
    backup = pipeline.spec.backup
    if backup is None:
        raise BackupError("spec.backup is not set: nowhere to back up to or restore from")
    if backup.s3 is not None:
        return BucketDestination(backup.s3, pipeline, env)
    return VolumeDestination(backup_dir, pipeline)
