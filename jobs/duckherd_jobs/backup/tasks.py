"""Backup and restore of the warehouse: a checkpointed copy of the DuckDB file.

Backup: under the writer's lock (a read-write connection, so no stage writes meanwhile),
`CHECKPOINT` folds the write-ahead log into the file, and a child process copies the file.
The copy is made by a child (`cp`) because DuckDB's lock is a POSIX record lock: if this
process opened and closed the file itself, closing that descriptor would drop the lock while
the copy is still being relied on. The copy is checked (it opens, its checksum is recorded),
then committed to the destination with its `backup.json` last, and backups beyond `keep` are
deleted. docs/backup.md has the measurements that chose a file copy over EXPORT DATABASE.

Restore: the backup is downloaded beside the warehouse, its checksum verified and opened,
then swapped in with one rename while the lock on the old file is held: a stage waiting for
the lock opens the restored file. Everything of the warehouse comes back, `_duckherd.state`
(the incremental cursors) included, so the next run continues from the backup's cursors.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from duckherd.api import DataPipeline
from duckherd.status import rfc3339
from duckherd.summary import BackupRecord, TaskSummary
from duckherd_jobs.backup.destinations import BackupError, Destination, destination_for
from duckherd_jobs.context import utc_now
from duckherd_jobs.warehouse import WarehouseCopyError, connect, copy_in_child, open_with_retry

LATEST = "latest"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class TaskContext:
    """Inputs of a backup or restore."""

    pipeline: DataPipeline
    warehouse: Path
    backup_dir: Path
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    lock_timeout_seconds: float = 600.0

    def destination(self) -> Destination:
        return destination_for(self.pipeline, self.env, self.backup_dir)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_in_child(source: Path, target: Path) -> None:
    """A child process copies (warehouse.copy_in_child): see the module doc for why."""
    try:
        copy_in_child(source, target)
    except WarehouseCopyError as error:
        raise BackupError(str(error)) from None


def _newest_run(connection: duckdb.DuckDBPyConnection) -> str | None:
    row = connection.execute(
        "SELECT run_id FROM _duckherd.runs WHERE run_id <> '' "
        "ORDER BY started_at DESC NULLS LAST, finished_at DESC NULLS LAST LIMIT 1"
    ).fetchone()
    return str(row[0]) if row else None


def snapshot(warehouse: Path, target: Path, *, timeout_seconds: float) -> str | None:
    """A consistent copy of the warehouse at `target`; returns the newest run it holds."""
    if not warehouse.is_file():
        raise BackupError(f"warehouse {warehouse} does not exist: nothing to back up")
    with connect(warehouse, timeout_seconds=timeout_seconds) as connection:
        connection.execute("CHECKPOINT")
        run_id = _newest_run(connection)
        _copy_in_child(warehouse, target)
    return run_id


def _verify_opens(path: Path, what: str) -> str | None:
    """The file is a DuckDB warehouse with Duckherd's metadata; returns its newest run."""
    try:
        connection = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as error:
        raise BackupError(f"{what} does not open as a DuckDB file: {error}") from None
    try:
        return _newest_run(connection)
    except duckdb.CatalogException:
        raise BackupError(f"{what} holds no _duckherd.runs: not a Duckherd warehouse") from None
    finally:
        connection.close()


def run_backup(ctx: TaskContext) -> TaskSummary:
    """Take a backup, then delete the oldest beyond `spec.backup.keep`."""
    started = utc_now()
    backup = ctx.pipeline.spec.backup
    destination = ctx.destination()
    assert backup is not None  # destination() refused a spec without it
    backup_id = f"{started:%Y%m%dt%H%M%S}-{started:%f}"  # sorts by time, a valid label value
    with tempfile.TemporaryDirectory(prefix="duckherd-backup-") as scratch:
        staged = destination.staging_file(backup_id, Path(scratch))
        run_id = snapshot(ctx.warehouse, staged, timeout_seconds=ctx.lock_timeout_seconds)
        _verify_opens(staged, f"the snapshot {staged}")
        record = BackupRecord(
            id=backup_id,
            time=rfc3339(started),
            sizeBytes=staged.stat().st_size,
            runId=run_id,
            location=destination.location(backup_id),
            sha256=_sha256(staged),
            duckdb=duckdb.__version__,
        )
        destination.commit(backup_id, staged, record)
    kept = destination.records()
    pruned = [old.id for old in kept[backup.keep :]]
    for old_id in pruned:
        destination.delete(old_id)
    cleanup = getattr(destination, "remove_stale_partials", None)
    if cleanup is not None:
        cleanup()
    return TaskSummary(
        task="backup",
        ok=True,
        startedAt=rfc3339(started),
        finishedAt=rfc3339(utc_now()),
        backup=record,
        backups=kept[: backup.keep],
        pruned=pruned,
    )


def list_backups(ctx: TaskContext) -> list[BackupRecord]:
    return ctx.destination().records()


def _resolve(destination: Destination, backup_id: str) -> str:
    if backup_id != LATEST:
        return backup_id
    records = destination.records()
    if not records:
        raise BackupError("no backup to restore: the destination holds none")
    return records[0].id


def swap_in(warehouse: Path, restored: Path, *, timeout_seconds: float) -> None:
    """Replace the warehouse file with `restored` (same folder) while holding the lock on the
    old one; its write-ahead log is folded in first so no stale log applies to the new file."""
    wal = warehouse.with_name(warehouse.name + ".wal")
    if not warehouse.exists():
        wal.unlink(missing_ok=True)
        os.replace(restored, warehouse)
        return
    connection = open_with_retry(warehouse, timeout_seconds=timeout_seconds)
    try:
        connection.execute("CHECKPOINT")
        wal.unlink(missing_ok=True)
        os.replace(restored, warehouse)
        descriptor = os.open(warehouse.parent, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    finally:
        connection.close()


def run_restore(ctx: TaskContext, backup_id: str) -> TaskSummary:
    """Bring backup `backup_id` (or `latest`) back as the warehouse."""
    started = utc_now()
    destination = ctx.destination()
    wanted = _resolve(destination, backup_id)
    ctx.warehouse.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".duckherd-restore-", dir=ctx.warehouse.parent) as tmp:
        staged = Path(tmp) / ctx.warehouse.name
        record = destination.fetch(wanted, staged)
        if record.sha256 and _sha256(staged) != record.sha256:
            raise BackupError(f"backup {wanted} is damaged: its checksum does not match")
        _verify_opens(staged, f"backup {wanted}")
        swap_in(ctx.warehouse, staged, timeout_seconds=ctx.lock_timeout_seconds)
    return TaskSummary(
        task="restore",
        ok=True,
        startedAt=rfc3339(started),
        finishedAt=rfc3339(utc_now()),
        backup=record,
    )
