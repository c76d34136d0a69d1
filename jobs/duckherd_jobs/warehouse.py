"""The DuckDB warehouse: one file, one writer at a time, a metadata schema of our own.

DuckDB lets one read-write process open a file. Stages of one pipeline are serialized by the
operator, but a manual Job or a local run can still collide, so `connect` waits (bounded) for
the lock rather than failing at once, and names the file and the wait on timeout.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from duckherd.summary import StageSummary
from duckherd_jobs.sql import DEFAULT_SCHEMA, quote_identifier

SCHEMAS = ("raw", "staging", "intermediate", DEFAULT_SCHEMA, "_duckherd")

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
"""


class WarehouseLockTimeout(TimeoutError):
    """Another process held the warehouse for longer than we may wait."""


def _is_lock_error(error: duckdb.Error) -> bool:
    text = str(error)
    return "Could not set lock" in text or "Conflicting lock" in text


def open_with_retry(
    path: Path, *, timeout_seconds: float = 600.0, read_only: bool = False
) -> duckdb.DuckDBPyConnection:
    """Open the file, waiting (with backoff, bounded) while another process holds the lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_seconds
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
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


def record_run(connection: duckdb.DuckDBPyConnection, summary: StageSummary) -> None:
    """The full record of a stage (the termination message carries a compact copy)."""
    connection.execute(
        "INSERT INTO _duckherd.runs VALUES (?, ?, ?, ?, ?, ?)",
        [
            summary.runId or "",
            summary.stage,
            summary.ok,
            summary.startedAt,
            summary.finishedAt,
            summary.model_dump_json(exclude_defaults=True),
        ],
    )


def load_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
