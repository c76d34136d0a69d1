"""Load extracted sources into `raw.<name>` inside one transaction with the cursor update."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from duckherd.api import Source
from duckherd.contract import RAW_SCHEMA
from duckherd_jobs.ingest.errors import IngestError
from duckherd_jobs.ingest.extracted import Extracted
from duckherd_jobs.ingest.schema import IncompatibleType, column_type_for_new_column, widen
from duckherd_jobs.sql import quote_identifier, sql_string

LOADED_AT, RUN_ID = "_loaded_at", "_run_id"
RESERVED_COLUMNS = (LOADED_AT, RUN_ID)


@dataclass(frozen=True)
class LoadResult:
    table: str
    rows: int
    loaded: int


def stored_cursors(connection: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, str]]:
    """Source name -> (cursor field, cursor value) remembered by earlier successful runs."""
    rows = connection.execute(
        "SELECT source, cursor_field, cursor_value FROM _duckherd.state "
        "WHERE cursor_value IS NOT NULL"
    ).fetchall()
    return {str(source): (str(field), str(value)) for source, field, value in rows}


def cursor_for(source: Source, stored: dict[str, tuple[str, str]]) -> str | None:
    """Where this run starts: the stored cursor of the same field, else the initial value."""
    incremental = source.incremental
    if incremental is None:
        return None
    field, value = stored.get(source.name, ("", ""))
    return value if field == incremental.cursorField else incremental.initialValue


def _columns(
    connection: duckdb.DuckDBPyConnection, relation: str, extracted: Extracted | None = None
) -> dict[str, str]:
    """Column name -> type of a table or a query, in order."""
    parameters = extracted.parameters if extracted is not None else []
    rows = connection.execute(f"DESCRIBE {relation}", parameters).fetchall()
    return {str(row[0]): str(row[1]) for row in rows}


def _table_exists(connection: duckdb.DuckDBPyConnection, name: str) -> bool:
    row = connection.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [RAW_SCHEMA, name],
    ).fetchone()
    return bool(row and row[0])


class FastReadFailed(Exception):
    """The sampled types did not fit a later value: read again with full inference."""


class SourceLoader:
    """Writes one source's records into `raw.<name>` by its disposition."""

    def __init__(
        self,
        connection: duckdb.DuckDBPyConnection,
        source: Source,
        extracted: Extracted,
        run_id: str,
        loaded_at: datetime,
    ) -> None:
        self.connection = connection
        self.source = source
        self.extracted = extracted
        self.use_fallback = False
        self.run_id = run_id
        self.loaded_at = loaded_at
        self.table = f"{RAW_SCHEMA}.{source.name}"
        self.target = f"{quote_identifier(RAW_SCHEMA)}.{quote_identifier(source.name)}"
        self.incoming: dict[str, str] = {}

    def _fail(self, cause: str) -> IngestError:
        return IngestError(f"source {self.source.name} ({self.table}): {cause}")

    @property
    def select_sql(self) -> str:
        extracted = self.extracted
        if self.use_fallback and extracted.fallback_sql is not None:
            return extracted.fallback_sql
        return extracted.select_sql

    def describe(self) -> None:
        """Learn the incoming columns (DuckDB samples the files); before the transaction."""
        if self.extracted.empty:
            return
        try:
            self.incoming = _columns(self.connection, f"({self.select_sql})", self.extracted)
        except duckdb.Error as error:
            raise self._fail(f"cannot read the fetched data: {error}") from None
        for reserved in RESERVED_COLUMNS:
            if reserved in self.incoming:
                raise self._fail(f"column {reserved} is reserved for Duckherd's load metadata")
        self._check_key_columns()

    def switch_to_fallback(self) -> bool:
        if self.extracted.fallback_sql is None or self.use_fallback:
            return False
        self.use_fallback = True
        return True

    # ------------------------------------------------------------------ writing

    def load(self, stored_cursor: str | None) -> tuple[LoadResult, str | None]:
        """Write this run's rows; returns the result and the new cursor value (or None)."""
        if self.extracted.empty:
            return LoadResult(self.table, self._count_target(), 0), None
        exists = _table_exists(self.connection, self.source.name)
        merge = exists and self.source.writeDisposition == "merge"
        batch, parameters = self._batch_sql(stored_cursor), self.extracted.parameters
        if merge:
            # Read once into a temp table: the keys are deleted, then the rows inserted.
            self._execute(f"CREATE OR REPLACE TEMP TABLE __duckherd_batch AS {batch}", parameters)
            batch, parameters = "SELECT * FROM __duckherd_batch", []
        if not exists or self.source.writeDisposition == "replace":
            loaded = self._execute(f"CREATE OR REPLACE TABLE {self.target} AS {batch}", parameters)
        else:
            self._evolve()
            if merge:
                self._delete_matching_keys()
            loaded = self._execute(f"INSERT INTO {self.target} BY NAME {batch}", parameters)
        if merge:
            self.connection.execute("DROP TABLE __duckherd_batch")
        new_cursor = self._max_cursor() if loaded else None
        return LoadResult(self.table, self._count_target(), loaded), new_cursor

    def _execute(self, sql: str, parameters: list[object]) -> int:
        """Run a statement that reads the extracted files; returns the row count it wrote."""
        try:
            row = self.connection.execute(sql, parameters).fetchone()
        except (duckdb.ConversionException, duckdb.InvalidInputException) as error:
            # A sampled type that a later value does not fit: read again, inferring from all.
            if self.extracted.fallback_sql is not None and not self.use_fallback:
                raise FastReadFailed(str(error)) from error
            raise self._fail(f"cannot load the fetched data: {error}") from None
        except duckdb.IOException as error:
            raise self._fail(f"cannot read the fetched data: {error}") from None
        return int(row[0]) if row else 0

    def _check_key_columns(self) -> None:
        wanted = list(self.source.primaryKey) if self.source.writeDisposition == "merge" else []
        if self.source.incremental is not None:
            wanted.append(self.source.incremental.cursorField)
        for column in wanted:
            if column not in self.incoming:
                raise self._fail(f"column {column} (primaryKey/cursorField) is not in the data")

    def _batch_sql(self, stored_cursor: str | None) -> str:
        """This run's rows: newer than the cursor, one per key for merge (the last wins)."""
        where = qualify = ""
        incremental = self.source.incremental
        if incremental is not None and stored_cursor is not None:
            # Also guards against a concurrent run that advanced the cursor while we fetched.
            field = incremental.cursorField
            where = (
                f" WHERE {quote_identifier(field)} > CAST({sql_string(stored_cursor)} AS "
                f"{self.incoming[field]})"
            )
        ordinal = ""
        if self.source.writeDisposition == "merge":
            keys = ", ".join(quote_identifier(key) for key in self.source.primaryKey)
            ordinal = ", row_number() OVER () AS __duckherd_ordinal"
            qualify = (
                f" QUALIFY row_number() OVER (PARTITION BY {keys} "
                "ORDER BY __duckherd_ordinal DESC) = 1"
            )
        metadata = (
            f"CAST({sql_string(self.loaded_at.isoformat())} AS TIMESTAMPTZ) AS {LOADED_AT}, "
            f"{sql_string(self.run_id)} AS {RUN_ID}"
        )
        rows = f"SELECT *{ordinal} FROM ({self.select_sql}){where}"
        exclude = " EXCLUDE (__duckherd_ordinal)" if ordinal else ""
        return f"SELECT *{exclude}, {metadata} FROM ({rows}){qualify}"

    def _max_cursor(self) -> str | None:
        incremental = self.source.incremental
        if incremental is None:
            return None
        column = quote_identifier(incremental.cursorField)
        kind = self.incoming[incremental.cursorField].upper()
        if kind in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"):
            expression = f"strftime(timezone('UTC', max({column})), '%Y-%m-%dT%H:%M:%S.%fZ')"
        elif kind == "TIMESTAMP":
            expression = f"strftime(max({column}), '%Y-%m-%dT%H:%M:%S.%f')"
        else:
            expression = f"CAST(max({column}) AS VARCHAR)"
        row = self.connection.execute(
            f"SELECT {expression} FROM {self.target} WHERE {LOADED_AT} = CAST(? AS TIMESTAMPTZ)",
            [self.loaded_at.isoformat()],
        ).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def _evolve(self) -> None:
        current = _columns(self.connection, self.target)
        for column, kind in self.incoming.items():
            quoted = quote_identifier(column)
            if column not in current:
                new_type = column_type_for_new_column(kind)
                self.connection.execute(f"ALTER TABLE {self.target} ADD COLUMN {quoted} {new_type}")
                continue
            try:
                wider = widen(current[column], kind)
            except IncompatibleType as error:
                raise self._fail(f"column {column}: incompatible type change: {error}") from None
            if wider.upper() != current[column].upper():
                self.connection.execute(
                    f"ALTER TABLE {self.target} ALTER COLUMN {quoted} TYPE {wider}"
                )

    def _delete_matching_keys(self) -> None:
        keys = self.source.primaryKey
        for key in keys:
            row = self.connection.execute(
                f"SELECT count(*) FROM __duckherd_batch WHERE {quote_identifier(key)} IS NULL"
            ).fetchone()
            if row and row[0]:
                raise self._fail(f"primaryKey column {key} is NULL in {row[0]} rows")
        match = " AND ".join(
            f"{self.target}.{quote_identifier(key)} = batch.{quote_identifier(key)}" for key in keys
        )
        self.connection.execute(
            f"DELETE FROM {self.target} USING __duckherd_batch AS batch WHERE {match}"
        )

    def _count_target(self) -> int:
        if not _table_exists(self.connection, self.source.name):
            return 0
        row = self.connection.execute(f"SELECT count(*) FROM {self.target}").fetchone()
        return int(row[0]) if row else 0


def save_cursor(
    connection: duckdb.DuckDBPyConnection, source: Source, value: str, run_id: str
) -> None:
    assert source.incremental is not None
    connection.execute(
        "INSERT OR REPLACE INTO _duckherd.state VALUES (?, ?, ?, now(), ?)",
        [source.name, source.incremental.cursorField, value, run_id],
    )
