"""PostgreSQL sources: `COPY (SELECT ...) TO STDOUT` as CSV into a spool file.

Column types come from PostgreSQL itself (the result's type OIDs), not from sniffing the CSV:
a text column of digits stays text, numeric(12,2) stays exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions

from duckherd.api import PostgresSource, Source
from duckherd_jobs.fault_points import pause_point
from duckherd_jobs.ingest.errors import IngestError
from duckherd_jobs.ingest.extracted import Extracted
from duckherd_jobs.redaction import redact
from duckherd_jobs.sql import quote_identifier, sql_string

COPY_BUFFER_BYTES = 1 << 20

# PostgreSQL type OID -> DuckDB type; anything else arrives as its text form (VARCHAR).
_TYPES_BY_OID: dict[int, str] = {
    16: "BOOLEAN",
    20: "BIGINT",
    21: "SMALLINT",
    23: "INTEGER",
    26: "BIGINT",
    700: "FLOAT",
    701: "DOUBLE",
    1082: "DATE",
    1083: "TIME",
    1114: "TIMESTAMP",
    1184: "TIMESTAMPTZ",
    114: "JSON",
    3802: "JSON",
    2950: "UUID",
}
_NUMERIC_OID = 1700


def _duckdb_type(column: Any) -> str:
    if column.type_code == _NUMERIC_OID:
        precision, scale = column.precision, column.scale
        if precision and 0 < precision <= 38 and scale is not None and 0 <= scale <= precision:
            return f"DECIMAL({precision},{scale})"
        return "DOUBLE"
    return _TYPES_BY_OID.get(column.type_code, "VARCHAR")


def relation_sql(postgres: PostgresSource) -> str:
    if postgres.table is not None:
        return "SELECT * FROM " + ".".join(
            quote_identifier(part) for part in postgres.table.split(".")
        )
    assert postgres.query is not None
    return f"SELECT * FROM ({postgres.query.rstrip().rstrip(';')}) AS duckherd_source"


class PostgresExtractor:
    def __init__(
        self, source: Source, env: Mapping[str, str], cursor: str | None, spool_dir: Path
    ) -> None:
        assert source.postgres is not None
        self.source = source
        self.postgres = source.postgres
        self.env = env
        self.cursor = cursor
        self.spool_path = spool_dir / f"{source.name}.csv"
        self.secrets: list[str] = []

    def _where(self, cause: str) -> str:
        return f"source {self.source.name} (postgres): {redact(cause, self.secrets)}"

    def _connect(self) -> Any:
        postgres = self.postgres
        if postgres.dsnSecretRef is not None:
            dsn = postgres.dsnSecretRef.resolve(self.env)
            self.secrets.append(dsn)
            return psycopg2.connect(dsn, connect_timeout=30)
        connection = postgres.connection
        assert connection is not None
        password = None
        if connection.passwordSecretRef is not None:
            password = connection.passwordSecretRef.resolve(self.env)
            self.secrets.append(password)
        return psycopg2.connect(
            host=connection.host,
            port=connection.port,
            dbname=connection.database,
            user=connection.user,
            password=password,
            sslmode=connection.sslMode,
            connect_timeout=30,
        )

    def extract(self) -> Extracted:
        try:
            connection = self._connect()
        except psycopg2.Error as error:
            raise IngestError(self._where(f"cannot connect: {error}".strip())) from None
        try:
            connection.set_session(readonly=True)
            with connection.cursor() as cursor:
                # Text forms DuckDB parses exactly: UTC ISO timestamps, round-tripping floats.
                cursor.execute("SET TimeZone TO 'UTC'")
                cursor.execute("SET DateStyle TO 'ISO, YMD'")
                cursor.execute("SET extra_float_digits TO 3")
                select = self._select(cursor)
                cursor.execute(f"SELECT * FROM ({select}) AS duckherd_probe LIMIT 0")
                columns = [(c.name, _duckdb_type(c)) for c in cursor.description]
                with self.spool_path.open("wb", buffering=COPY_BUFFER_BYTES) as spool:
                    cursor.copy_expert(
                        f"COPY ({select}) TO STDOUT WITH (FORMAT csv, HEADER false)",
                        spool,
                        size=COPY_BUFFER_BYTES,
                    )
                pause_point("ingest.postgres.copied")
        except psycopg2.Error as error:
            raise IngestError(self._where(str(error).strip())) from None
        finally:
            connection.close()
        return self._extracted(columns)

    def _select(self, cursor: Any) -> str:
        select = relation_sql(self.postgres)
        incremental = self.source.incremental
        if incremental is None or self.cursor is None:
            return select
        condition = cursor.mogrify(
            f"{quote_identifier(incremental.cursorField)} > %s", (self.cursor,)
        ).decode()
        return f"SELECT * FROM ({select}) AS duckherd_relation WHERE {condition}"

    def _extracted(self, columns: Sequence[tuple[str, str]]) -> Extracted:
        if self.spool_path.stat().st_size == 0:
            return Extracted(select_sql="", empty=True)
        spec = ", ".join(f"{sql_string(name)}: {sql_string(kind)}" for name, kind in columns)
        select_list = ", ".join(quote_identifier(name) for name, _ in columns)
        reader = (
            f"read_csv(?, header = false, auto_detect = false, columns = {{{spec}}}, "
            "delim = ',', quote = '\"', escape = '\"', nullstr = '', "
            "allow_quoted_nulls = false)"
        )
        return Extracted(f"SELECT {select_list} FROM {reader}", [str(self.spool_path)])


def extract_postgres(
    source: Source, env: Mapping[str, str], cursor: str | None, spool_dir: Path
) -> Extracted:
    return PostgresExtractor(source, env, cursor, spool_dir).extract()
