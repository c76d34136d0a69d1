"""Publish a mart to Redis: one hash of JSON documents, swapped in atomically.

Key layout (`<prefix>` is `keyPrefix`, default `duckherd:<namespace>:<pipeline>:<schema.table>`):

- `<prefix>:rows` — a HASH: field = the row's key, value = the row as a JSON object.
  The key is the `keyColumns` values as text joined by `:`; without `keyColumns` it is the
  table's first column. Keys must be unique and not NULL, or the publish fails before any
  write (a hash would silently keep one row per key).
- `<prefix>:meta` — a STRING holding a JSON object: `table`, `pipeline`, `runId`, `version`
  (unique per publish), `rows`, `publishedAt` (RFC 3339), `keyColumns`, `columns`
  (name and DuckDB type), `rowsKey`.
- `<prefix>:staging:<version>` — transient: the new version while it loads (expires after 6h
  should the publisher die; removed on failure).
- `<prefix>:retired:<version>` — transient: the previous rows hash, UNLINKed (freed in the
  background by Redis) right after the swap (and set to expire in 5 minutes, should that
  UNLINK never arrive).

The swap is one Lua script, so it is atomic: it checks the staging hash holds every row,
renames the live hash aside, renames staging to `<prefix>:rows`, and writes `<prefix>:meta`.
Every single command a reader sends (HGET, HMGET, HGETALL, HLEN) sees exactly one complete
version; to pair the data with its metadata read both in one MULTI/EXEC; a reader that walks
the hash over several commands (HSCAN) compares `meta.version` before and after and retries
on a change. With `ttlSeconds`, both `rows` and `meta` expire together; each publish renews
them. JSON values: numbers stay numbers (DECIMAL and HUGEINT too), NaN and infinities become
null (JSON has none), BLOBs become base64 text, timestamps and intervals become DuckDB's text,
lists, structs and maps become JSON arrays and objects.

The target is one Redis endpoint (standalone or a managed primary; `rediss://` for TLS, ACL
users in the URL). During a publish it holds the old and the new version side by side, so it
needs room for two copies of the table. Redis Cluster is not supported.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast
from urllib.parse import urlsplit

import duckdb
import pyarrow as pa
import redis

from duckherd_jobs.fault_points import pause_point
from duckherd_jobs.publish.errors import PublishError, PublishInputError
from duckherd_jobs.publish.feed import BatchFeed
from duckherd_jobs.publish.mart import Column, Mart
from duckherd_jobs.redaction import describe_error

log = logging.getLogger("duckherd.jobs.publish")

ROWS_PER_COMMAND = 1000
FEED_BATCH_ROWS = 64 * ROWS_PER_COMMAND
COMMANDS_PER_ROUND_TRIP = 64
STAGING_TTL_SECONDS = 6 * 3600
_CRLF = "chr(13) || chr(10)"
_OFFSET_FORMATS: dict[pa.DataType, Literal["i", "q"]] = {pa.string(): "i", pa.large_string(): "q"}

_SWAP_SCRIPT = """
local rows, staging, retired, meta = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local document, ttl, expected = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local loaded = redis.call('HLEN', staging)
if loaded ~= expected then
  return redis.error_reply('DUCKHERD staging hash holds ' .. loaded .. ' rows, expected '
    .. expected .. ' (did it expire or get overwritten?)')
end
if redis.call('EXISTS', rows) == 1 then
  redis.call('RENAME', rows, retired)
  redis.call('EXPIRE', retired, 300)  -- freed even if the UNLINK that follows never arrives
end
if expected > 0 then
  redis.call('RENAME', staging, rows)
  if ttl > 0 then redis.call('EXPIRE', rows, ttl) else redis.call('PERSIST', rows) end
end
if ttl > 0 then
  redis.call('SET', meta, document, 'EX', ttl)
else
  redis.call('SET', meta, document)
end
return loaded
"""


@dataclass(frozen=True)
class RedisPayload:
    """The mart as RESP-encoded `field value` pairs, one string per row, rendered by a feed."""

    rows: int
    fragments: BatchFeed[pa.Array]
    key_columns: tuple[str, ...]
    columns: tuple[Column, ...]


def default_prefix(namespace: str, pipeline: str, table: str) -> str:
    return f"duckherd:{namespace}:{pipeline}:{table}"


def _json_value(column: Column) -> str:
    if column.type in ("DOUBLE", "FLOAT"):
        return f"CASE WHEN isfinite({column.sql}) THEN {column.sql} END"
    if column.type == "BLOB":
        return f"base64({column.sql})"
    return column.sql


def _key_expression(key_columns: tuple[Column, ...]) -> str:
    # `||` keeps NULL when any part is NULL, so a NULL key part is caught by validation.
    return " || ':' || ".join(f"CAST({column.sql} AS VARCHAR)" for column in key_columns)


def _key_columns(mart: Mart, names: list[str], field: str) -> tuple[Column, ...]:
    if not names:
        return mart.columns[:1]
    by_name = {column.name: column for column in mart.columns}
    missing = [name for name in names if name not in by_name]
    if missing:
        raise PublishInputError(
            f"{field}.keyColumns: {', '.join(missing)} not in {mart.name} "
            f"(columns: {', '.join(by_name)})"
        )
    return tuple(by_name[name] for name in names)


def read_redis_payload(
    connection: duckdb.DuckDBPyConnection,
    warehouse: Path,
    mart: Mart,
    key_column_names: list[str],
    field: str,
) -> RedisPayload:
    """Validate the keys now; render every row as RESP inside DuckDB, in a background feed."""
    key_columns = _key_columns(mart, key_column_names, field)
    keyed = f"SELECT {_key_expression(key_columns)} AS k FROM {mart.sql}"
    rows = _validate_keys(connection, keyed, mart, key_columns, field)
    document = ", ".join(f"{column.sql} := {_json_value(column)}" for column in mart.columns)
    # RESP bulk strings `$<bytes>\r\n<data>\r\n` for field and value: strlen counts bytes.
    query = f"""
        WITH pairs AS (
            SELECT {_key_expression(key_columns)} AS k,
                   CAST(to_json(struct_pack({document})) AS VARCHAR) AS v
            FROM {mart.sql}
        )
        SELECT '$' || strlen(k) || {_CRLF} || k || {_CRLF} ||
               '$' || strlen(v) || {_CRLF} || v || {_CRLF} AS fragment
        FROM pairs
    """
    return RedisPayload(
        rows=rows,
        fragments=BatchFeed(warehouse, query, _first_column, FEED_BATCH_ROWS),
        key_columns=tuple(column.name for column in key_columns),
        columns=mart.columns,
    )


def _first_column(batch: pa.RecordBatch) -> pa.Array:
    return batch.column(0)


def _validate_keys(
    connection: duckdb.DuckDBPyConnection,
    keyed: str,
    mart: Mart,
    key_columns: tuple[Column, ...],
    field: str,
) -> int:
    """The row count, once the keys proved unique and never NULL."""
    names = ", ".join(column.name for column in key_columns)
    total, non_null, distinct = connection.execute(
        f"SELECT count(*), count(k), count(DISTINCT k) FROM ({keyed})"
    ).fetchall()[0]
    where = f"{field}.keyColumns: key ({names}) of {mart.name}"
    advice = "set keyColumns to columns that identify a row"
    if non_null != total:
        raise PublishInputError(f"{where} is NULL in {total - non_null} rows; {advice}")
    if distinct != total:
        examples = connection.execute(
            f"SELECT k FROM ({keyed}) GROUP BY k HAVING count(*) > 1 ORDER BY k LIMIT 3"
        ).fetchall()
        shown = ", ".join(repr(row[0]) for row in examples)
        raise PublishInputError(
            f"{where} is not unique: {total - distinct} duplicate rows (e.g. {shown}); {advice}"
        )
    return int(total)


def _row_slices(array: pa.Array, rows_per_slice: int) -> Iterator[tuple[int, memoryview]]:
    """Consecutive rows as one contiguous byte range of the Arrow data buffer (no copy).

    Hand-written for speed: building a million Python strings and letting the client encode
    them costs more than sending them; Arrow already holds the bytes back to back.
    """
    offset_format = _OFFSET_FORMATS.get(array.type)
    if offset_format is None:
        array, offset_format = array.cast(pa.large_string()), "q"
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = memoryview(offsets_buffer).cast(offset_format)
    data = memoryview(data_buffer)
    for start in range(0, len(array), rows_per_slice):
        stop = min(start + rows_per_slice, len(array))
        begin, end = offsets[array.offset + start], offsets[array.offset + stop]
        yield stop - start, data[begin:end]


@dataclass(frozen=True)
class RedisPublication:
    """One mart to one Redis server."""

    table: str
    prefix: str
    url: str
    secret_name: str
    ttl_seconds: int | None
    payload: RedisPayload
    run_id: str
    pipeline: str
    published_at: str

    @property
    def label(self) -> str:
        return f"redis:{self.prefix}"

    def publish(self) -> int:
        try:
            client = redis.Redis.from_url(self.url, socket_connect_timeout=10, socket_timeout=120)
        except Exception as error:  # a malformed URL: never echo it
            raise PublishError(
                f"{self.label}: the URL in Secret {self.secret_name} is not a valid Redis URL "
                f"({describe_error(error, [self.url])})"
            ) from None
        try:
            client.ping()
            return self._publish(client)
        except Exception as error:
            raise PublishError(
                f"{self.label}: redis at {self._address()} (URL from Secret {self.secret_name}): "
                f"{describe_error(error, [self.url])}"
            ) from None
        finally:
            client.close()

    def close(self) -> None:
        self.payload.fragments.close()

    def _address(self) -> str:
        try:
            parts = urlsplit(self.url)
            return f"{parts.hostname}:{parts.port or 6379}"
        except ValueError:
            return "an unparsable address"

    def _publish(self, client: redis.Redis) -> int:
        version = f"{self.run_id}.{uuid.uuid4().hex[:8]}"
        staging = f"{self.prefix}:staging:{version}"
        try:
            self._load(client, staging)
            pause_point("publish.redis.staged")
            loaded = client.register_script(_SWAP_SCRIPT)(
                keys=[
                    f"{self.prefix}:rows",
                    staging,
                    f"{self.prefix}:retired:{version}",
                    f"{self.prefix}:meta",
                ],
                args=[self._meta(version), self.ttl_seconds or 0, self.payload.rows],
            )
        except Exception:
            self._discard(client, staging)
            raise
        client.unlink(f"{self.prefix}:retired:{version}")
        log.info(
            "published %s to %s: %s rows (version %s)", self.table, self.label, loaded, version
        )
        return int(loaded)

    def _load(self, client: redis.Redis, staging: str) -> None:
        key = staging.encode()
        connection = client.connection_pool.get_connection()
        try:
            pending: list[bytes | memoryview] = []
            replies = 0
            expiry_sent = False
            for rows, data in (
                piece
                for array in self.payload.fragments
                for piece in _row_slices(array, ROWS_PER_COMMAND)
            ):
                pending += [b"*%d\r\n$4\r\nHSET\r\n$%d\r\n%s\r\n" % (2 + 2 * rows, len(key), key)]
                pending.append(data)
                replies += 1
                if not expiry_sent:  # EXPIRE needs the key to exist: right after the first HSET
                    pending += connection.pack_command(  # type: ignore[no-untyped-call]  # redis-py 8: unannotated
                        "EXPIRE", key, STAGING_TTL_SECONDS
                    )
                    replies += 1
                    expiry_sent = True
                if replies >= COMMANDS_PER_ROUND_TRIP:
                    self._round_trip(connection, pending, replies)
                    pending, replies = [], 0
            if replies:
                self._round_trip(connection, pending, replies)
        except BaseException:
            connection.disconnect()  # type: ignore[no-untyped-call]  # in flight: never reuse it
            raise
        finally:
            client.connection_pool.release(connection)

    @staticmethod
    def _round_trip(
        connection: redis.Connection, pending: list[bytes | memoryview], replies: int
    ) -> None:
        # The stub says str; the implementation sends any bytes-like object as it is.
        connection.send_packed_command(cast("list[str]", pending))  # type: ignore[no-untyped-call]
        # Read every reply even after an error reply: once they are all in, the server has
        # finished with the batch, so the cleanup cannot race HSETs still in its buffer.
        first_error: redis.ResponseError | None = None
        for _ in range(replies):
            try:
                connection.read_response()
            except redis.ResponseError as error:
                first_error = first_error or error
        if first_error is not None:
            raise first_error

    def _discard(self, client: redis.Redis, staging: str) -> None:
        try:
            client.unlink(staging)
        except redis.RedisError as error:  # the target is down: the staging TTL cleans up
            log.warning(
                "could not remove %s (expires by itself): %s", staging, type(error).__name__
            )

    def _meta(self, version: str) -> str:
        return json.dumps(
            {
                "table": self.table,
                "pipeline": self.pipeline,
                "runId": self.run_id,
                "version": version,
                "rows": self.payload.rows,
                "publishedAt": self.published_at,
                "keyColumns": list(self.payload.key_columns),
                "columns": [{"name": c.name, "type": c.type} for c in self.payload.columns],
                "rowsKey": f"{self.prefix}:rows",
            },
            separators=(",", ":"),
        )
