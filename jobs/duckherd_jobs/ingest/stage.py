"""`run_ingest`: fetch every source first, then load them all in one short transaction.

The network is the slow, unbounded part, so it happens before the warehouse lock is taken:
sources land in a spool directory next to the warehouse (the volume sized for the data, not
the pod's small root filesystem). Then one connection parses the spool into temp tables and
writes every `raw.<name>` together with the incremental cursors in a single transaction: a
failure anywhere leaves tables and cursors exactly as they were.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import duckdb

from duckherd.api import Source
from duckherd.contract import ENV_INGEST_MEMORY_LIMIT
from duckherd.status import rfc3339
from duckherd.summary import StageSummary, TableSummary
from duckherd_jobs.context import StageContext, utc_now
from duckherd_jobs.fault_points import pause_point
from duckherd_jobs.ingest.errors import IngestError
from duckherd_jobs.ingest.extracted import Extracted
from duckherd_jobs.ingest.files import extract_file
from duckherd_jobs.ingest.http import extract_http
from duckherd_jobs.ingest.load import (
    FastReadFailed,
    LoadResult,
    SourceLoader,
    cursor_for,
    save_cursor,
    stored_cursors,
)
from duckherd_jobs.ingest.postgres import extract_postgres
from duckherd_jobs.retention import prune
from duckherd_jobs.warehouse import connect

log = logging.getLogger("duckherd.jobs.ingest")

DEFAULT_MEMORY_LIMIT = "256MB"
MAX_PARALLEL_SOURCES = 4


def run_ingest(ctx: StageContext) -> StageSummary:
    sources = ctx.pipeline.spec.sources
    with connect(ctx.warehouse, timeout_seconds=ctx.lock_timeout_seconds) as connection:
        cursors = stored_cursors(connection)
    ctx.warehouse.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_spools(ctx.warehouse.parent)
    with spool_directory(ctx.warehouse.parent) as spool:
        # Sources wait on different servers: fetch them side by side.
        with ThreadPoolExecutor(min(len(sources), MAX_PARALLEL_SOURCES)) as pool:
            extracted = list(
                pool.map(
                    lambda source: _extract(source, ctx, cursor_for(source, cursors), spool),
                    sources,
                )
            )
        loaded_at = utc_now()
        with connect(ctx.warehouse, timeout_seconds=ctx.lock_timeout_seconds) as connection:
            results = load_all(connection, sources, extracted, ctx.run_id, loaded_at)
            # Retention after the load, under the same lock (docs/backup.md).
            pruned = prune(connection, ctx.pipeline.spec, ctx.run_id, loaded_at)
    return StageSummary(
        stage="ingest",
        ok=True,
        tables={
            result.table: TableSummary(
                rows=result.rows - pruned.get(result.table, 0),
                loaded=result.loaded,
                loadedAt=rfc3339(loaded_at),
            )
            for result in results
        },
        pruned=pruned,
    )


SPOOL_PREFIX = ".duckherd-spool-"
_SPOOL_LOCK = ".in-use"
_UNLOCKED_GRACE_SECONDS = 3600


@contextmanager
def spool_directory(parent: Path) -> Iterator[Path]:
    """A spool directory on the volume, flock'ed while this ingest uses it: the lock dies with
    the process, so a directory whose lock can be taken was left by a killed ingest."""
    with (
        tempfile.TemporaryDirectory(prefix=SPOOL_PREFIX, dir=parent) as directory,
        (Path(directory) / _SPOOL_LOCK).open("w") as lock,
    ):
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield Path(directory)


def remove_stale_spools(parent: Path) -> None:
    """Delete spool directories no live ingest holds (a killed one left them on the volume)."""
    for directory in parent.glob(SPOOL_PREFIX + "*"):
        try:
            with (directory / _SPOOL_LOCK).open("r") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live ingest is fetching into it
        except FileNotFoundError:
            if time.time() - directory.stat().st_mtime < _UNLOCKED_GRACE_SECONDS:
                continue  # just made: its ingest is about to lock it
        log.info("removing %s, left by an ingest that did not finish", directory.name)
        shutil.rmtree(directory, ignore_errors=True)


def memory_limit() -> str:
    """DuckDB's memory budget while loading: parsing spills to disk rather than growing RSS.

    A million records parse as fast under 256 MB as without a limit (measured, B1), and the
    pod's memory request can stay small. `DUCKHERD_INGEST_MEMORY_LIMIT` overrides it.
    """
    return os.environ.get(ENV_INGEST_MEMORY_LIMIT, DEFAULT_MEMORY_LIMIT)


def _extract(source: Source, ctx: StageContext, cursor: str | None, spool: Path) -> Extracted:
    if source.http is not None:
        return extract_http(source, ctx.env, cursor, spool)
    if source.postgres is not None:
        return extract_postgres(source, ctx.env, cursor, spool)
    return extract_file(source, ctx.env, cursor, spool, ctx.manifest_dir)


def load_all(
    connection: duckdb.DuckDBPyConnection,
    sources: Sequence[Source],
    extracted: Sequence[Extracted],
    run_id: str,
    loaded_at: datetime,
) -> list[LoadResult]:
    """Write every source and its cursor in one transaction (retried once with full type
    inference when a sampled type did not fit a later value)."""
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute("SET memory_limit = ?", [memory_limit()])
    loaders = [
        SourceLoader(connection, source, batch, run_id, loaded_at)
        for source, batch in zip(sources, extracted, strict=True)
    ]
    for loader in loaders:
        loader.describe()
    while True:
        try:
            return _load_in_transaction(connection, loaders, run_id)
        except FastReadFailed:
            if not any(loader.switch_to_fallback() for loader in loaders):
                raise
            for loader in loaders:
                loader.describe()


def _load_in_transaction(
    connection: duckdb.DuckDBPyConnection, loaders: Sequence[SourceLoader], run_id: str
) -> list[LoadResult]:
    connection.execute("BEGIN TRANSACTION")
    try:
        pause_point("ingest.load.begun")
        # Read again under the lock: a run that finished while we fetched moved the cursors.
        cursors = stored_cursors(connection)
        results = []
        for loader in loaders:
            result, new_cursor = loader.load(cursor_for(loader.source, cursors))
            pause_point("ingest.load.table-written")
            if new_cursor is not None:
                save_cursor(connection, loader.source, new_cursor, run_id)
                pause_point("ingest.load.cursor-saved")
            results.append(result)
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    pause_point("ingest.load.committed")
    return results


__all__ = ["IngestError", "load_all", "run_ingest"]
