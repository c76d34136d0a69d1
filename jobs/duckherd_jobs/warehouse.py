"""The DuckDB warehouse: one file, one writer at a time, a metadata schema of our own.

DuckDB lets one read-write process open a file. Stages of one pipeline are serialized by the
operator, but a manual Job or a local run can still collide, so `connect` waits (bounded) for
the lock rather than failing at once, and names the file and the wait on timeout.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from duckherd.contract import RAW_SCHEMA
from duckherd.errors import PipelineError
from duckherd.status import rfc3339
from duckherd.summary import StageSummary
from duckherd_jobs.sql import DEFAULT_SCHEMA, qualified, quote_identifier

SCHEMAS = (RAW_SCHEMA, "staging", "intermediate", DEFAULT_SCHEMA, "_duckherd")

METADATA_DDL = """
CREATE SCHEMA IF NOT EXISTS _duckherd;
CREATE TABLE IF NOT EXISTS _duckherd.runs (
    run_id VARCHAR NOT NULL,
    stage VARCHAR NOT NULL,
    ok BOOLEAN NOT NULL,
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    summary JSON NOT NULL
);
CREATE TABLE IF NOT EXISTS _duckherd.state (
    source VARCHAR PRIMARY KEY,
    cursor_field VARCHAR,
    cursor_value VARCHAR,
    updated_at TIMESTAMPTZ,
    run_id VARCHAR
);
CREATE TABLE IF NOT EXISTS _duckherd.checks (
    run_id VARCHAR NOT NULL,
    checked_at TIMESTAMPTZ NOT NULL,
    name VARCHAR NOT NULL,
    table_name VARCHAR NOT NULL,
    expectation VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,
    success BOOLEAN NOT NULL,
    observed_value JSON,
    result JSON
);
CREATE TABLE IF NOT EXISTS _duckherd.kpis (
    run_id VARCHAR NOT NULL,
    computed_at TIMESTAMPTZ NOT NULL,
    name VARCHAR NOT NULL,
    table_name VARCHAR NOT NULL,
    expression VARCHAR NOT NULL,
    value DOUBLE,
    error VARCHAR
);
CREATE TABLE IF NOT EXISTS _duckherd.profiles (
    run_id VARCHAR NOT NULL,
    profiled_at TIMESTAMPTZ NOT NULL,
    table_name VARCHAR NOT NULL,
    column_name VARCHAR NOT NULL,
    ok BOOLEAN NOT NULL,
    row_count BIGINT NOT NULL,
    profile JSON NOT NULL
);
"""


class WarehouseLockTimeout(PipelineError, TimeoutError):
    """Another process held the warehouse for longer than we may wait."""


class WarehouseCopyError(PipelineError, OSError):
    """Copying the warehouse file failed (the message carries `cp`'s reason)."""


def copy_in_child(source: Path, target: Path) -> None:
    """Copy a warehouse file whose lock this process may hold, in a child process (`cp`,
    sharing blocks where the filesystem can). DuckDB's lock is a POSIX record lock: were this
    process to open and close the file itself, the close would drop the lock."""
    result = subprocess.run(
        ["cp", "--reflink=auto", "--", str(source), str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise WarehouseCopyError(f"copying {source} to {target} failed: {result.stderr.strip()}")


def _is_lock_error(error: duckdb.Error) -> bool:
    text = str(error)
    return "Could not set lock" in text or "Conflicting lock" in text


def open_with_retry(
    path: Path,
    *,
    timeout_seconds: float = 600.0,
    read_only: bool = False,
    config: Mapping[str, str | bool] | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open the file, waiting (with backoff, bounded) while another process holds the lock.
    `config` is DuckDB's configuration (e.g. KPIs turn external access off)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_seconds
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only, config=dict(config or {}))
        except duckdb.IOException as error:
            if not _is_lock_error(error):
                raise
            if time.monotonic() >= deadline:
                raise WarehouseLockTimeout(
                    f"warehouse {path} is locked by another process; waited "
                    f"{timeout_seconds:.0f}s (is another stage of this pipeline running?)"
                ) from error
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 2.0)


@contextmanager
def connect(
    path: Path, *, timeout_seconds: float = 600.0, read_only: bool = False
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection with Duckherd's schemas in place; closed (lock released) on exit."""
    connection = open_with_retry(path, timeout_seconds=timeout_seconds, read_only=read_only)
    try:
        if not read_only:
            ensure_layout(connection)
        yield connection
    finally:
        connection.close()


def ensure_layout(connection: duckdb.DuckDBPyConnection) -> None:
    for schema in SCHEMAS:
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(schema)}")
    connection.execute(METADATA_DDL)


def record_run(
    connection: duckdb.DuckDBPyConnection,
    summary: StageSummary,
    started_at: datetime | None = None,
) -> None:
    """The full record of a stage (the termination message carries a compact copy).
    `started_at`: the precise start (the summary's is whole seconds), which retention
    compares with the rows' `_loaded_at`."""
    connection.execute(
        "INSERT INTO _duckherd.runs VALUES (?, ?, ?, ?, ?, ?)",
        [
            summary.runId or "",
            summary.stage,
            summary.ok,
            started_at or summary.startedAt,
            summary.finishedAt,
            summary.model_dump_json(exclude_defaults=True),
        ],
    )


def catalog_columns(connection: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    """(name, DuckDB type) of each column of a table or view in table order; [] if there is no
    such relation."""
    schema, _, name = table.partition(".")
    rows = connection.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_catalog = current_database() AND table_schema = ? AND table_name = ? "
        "ORDER BY ordinal_position",
        [schema, name],
    ).fetchall()
    return [(str(row[0]), str(row[1])) for row in rows]


@dataclass(frozen=True)
class WarehouseTable:
    name: str
    rows: int
    written_at: str | None
    """When the latest successful stage that writes tables (ingest, transform) wrote it."""


_USER_TABLES = """
SELECT schema_name, table_name FROM duckdb_tables()
WHERE database_name = current_database() AND NOT internal AND NOT temporary
  AND schema_name <> '_duckherd'
ORDER BY schema_name, table_name
"""
_LAST_WRITTEN = """
SELECT written.key, max(runs.finished_at)
FROM _duckherd.runs AS runs, json_each(runs.summary, '$.tables') AS written
WHERE runs.ok AND runs.stage IN ('ingest', 'transform')
GROUP BY written.key
"""


def list_tables(path: Path, *, timeout_seconds: float = 30.0) -> list[WarehouseTable]:
    """Every table of the warehouse outside `_duckherd`, with its row count; [] if no file."""
    if not path.exists():
        return []
    with connect(path, timeout_seconds=timeout_seconds, read_only=True) as connection:
        names = [f"{s}.{t}" for s, t in connection.execute(_USER_TABLES).fetchall()]
        has_runs = connection.execute(
            "SELECT count(*) FROM duckdb_tables() "
            "WHERE schema_name = '_duckherd' AND table_name = 'runs'"
        ).fetchone()
        written: dict[str, str] = {}
        if has_runs and has_runs[0]:
            rows = connection.execute(_LAST_WRITTEN).fetchall()
            written = {str(name): rfc3339(when) for name, when in rows if when is not None}
        return [WarehouseTable(name, _count(connection, name), written.get(name)) for name in names]


def _count(connection: duckdb.DuckDBPyConnection, name: str) -> int:
    row = connection.execute(f"SELECT count(*) FROM {qualified(name)}").fetchone()
    return int(row[0]) if row else 0
