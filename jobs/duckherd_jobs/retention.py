"""Retention: prune old raw rows (`retainFor`, `keepLoads` per source) and old run history
(`spec.history.keepRuns`) at the end of ingest, in one transaction.

What a mart still needs is decided from the warehouse's own run record: a raw row may go only
once a successful transform has started after it was loaded (`_loaded_at` before the start of
the latest successful transform in `_duckherd.runs`), so no row is pruned before the models
have been built from it; until a transform has succeeded, a pipeline with a transform prunes
no raw rows at all. A pipeline without a transform has no mart to protect. Incremental models
keep what they built; a model rebuilt in full from raw reflects the retained window after
its next build — that is what retention means for it (docs/backup.md).

History: the records of the newest `keepRuns` runs stay in `_duckherd.runs`, `checks` and
`profiles` (the API refuses a keepRuns a drift check would need more of), and the current
run is never pruned.
"""

from __future__ import annotations

from datetime import datetime

import duckdb

from duckherd.api import DataPipelineSpec, Source, parse_duration
from duckherd.contract import RAW_SCHEMA
from duckherd_jobs.ingest.load import LOADED_AT
from duckherd_jobs.sql import quote_identifier

HISTORY_TABLES = ("runs", "checks", "profiles")


def _count(connection: duckdb.DuckDBPyConnection, sql: str, parameters: list[object]) -> int:
    row = connection.execute(sql, parameters).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _exists(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(
        _count(
            connection,
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = ? AND table_name = ?",
            [schema, table],
        )
    )


def consumed_before(
    connection: duckdb.DuckDBPyConnection, spec: DataPipelineSpec
) -> tuple[bool, datetime | None]:
    """(may raw rows be pruned, only those loaded before when): the start of the latest
    successful transform; no limit without a transform; nothing before a transform succeeded."""
    if spec.transform is None:
        return True, None
    row = connection.execute(
        "SELECT max(started_at) FROM _duckherd.runs WHERE stage = 'transform' AND ok"
    ).fetchone()
    started = row[0] if row and row[0] is not None else None
    return started is not None, started


def _prune_source(
    connection: duckdb.DuckDBPyConnection, source: Source, now: datetime, horizon: datetime | None
) -> int:
    table = f"{quote_identifier(RAW_SCHEMA)}.{quote_identifier(source.name)}"
    loaded = quote_identifier(LOADED_AT)
    if source.retainFor is not None:
        cutoff: object = now - parse_duration(source.retainFor)
    else:
        row = connection.execute(
            f"SELECT min(load_time) FROM (SELECT DISTINCT {loaded} AS load_time FROM {table} "
            f"ORDER BY load_time DESC LIMIT ?)",
            [source.keepLoads],
        ).fetchone()
        loads = _count(connection, f"SELECT count(DISTINCT {loaded}) FROM {table}", [])
        if row is None or row[0] is None or loads <= (source.keepLoads or 0):
            return 0
        cutoff = row[0]
    parameters: list[object] = [cutoff]
    guard = ""
    if horizon is not None:  # the start of the last successful transform
        guard, parameters = f" AND {loaded} < ?", [cutoff, horizon]
    return _count(connection, f"DELETE FROM {table} WHERE {loaded} < ?{guard}", parameters)


def _prune_history(connection: duckdb.DuckDBPyConnection, keep: int, run_id: str) -> dict[str, int]:
    """Drop the records of every run but the newest `keep` (the current one always stays)."""
    older = [
        str(row[0])
        for row in connection.execute(
            "SELECT run_id FROM _duckherd.runs WHERE run_id <> ? GROUP BY run_id "
            "ORDER BY min(started_at) DESC NULLS LAST, run_id DESC OFFSET ?",
            [run_id, max(keep - 1, 0)],
        ).fetchall()
    ]
    if not older:
        return {}
    pruned = {}
    for name in HISTORY_TABLES:
        deleted = _count(
            connection, f"DELETE FROM _duckherd.{name} WHERE list_contains(?, run_id)", [older]
        )
        if deleted:
            pruned[f"_duckherd.{name}"] = deleted
    return pruned


def prune(
    connection: duckdb.DuckDBPyConnection, spec: DataPipelineSpec, run_id: str, now: datetime
) -> dict[str, int]:
    """Rows pruned per table (only tables that lost rows), all in one transaction."""
    connection.execute("BEGIN TRANSACTION")
    try:
        pruned: dict[str, int] = {}
        allowed, horizon = consumed_before(connection, spec)
        for source in spec.sources:
            if source.retainFor is None and source.keepLoads is None:
                continue
            if not allowed or not _exists(connection, RAW_SCHEMA, source.name):
                continue
            deleted = _prune_source(connection, source, now, horizon)
            if deleted:
                pruned[f"{RAW_SCHEMA}.{source.name}"] = deleted
        pruned.update(_prune_history(connection, spec.history.keepRuns, run_id))
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return pruned
