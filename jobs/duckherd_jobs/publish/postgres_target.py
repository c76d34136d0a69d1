"""Publish a mart to PostgreSQL: COPY into a staging table, then swap it in, in ONE transaction.

Inside one transaction: create `<schema>._duckherd_staging_<hex>`, `COPY ... FROM STDIN` (CSV
rendered by Arrow, batch by batch), rename the live table aside, rename staging to the target
name, drop the old table, re-grant the old table's privileges, and comment the table with the
run that published it. Readers see the old table until COMMIT and the new one after; a query
that waited on the swap's lock re-resolves the name and reads the new table. Any failure
(the server going away included) rolls everything back: the previous table is untouched and
no staging table is left behind. The swap waits at most 30s for readers' locks. Until the
commit the server holds both copies of the table.

Views that depend on the target table block the swap (PostgreSQL binds views to the table,
not its name): the publish fails naming them, and the old table stays.

Column types (DuckDB → PostgreSQL): BOOLEAN → boolean; TINYINT, SMALLINT, UTINYINT →
smallint; INTEGER, USMALLINT → integer; BIGINT, UINTEGER → bigint; UBIGINT → numeric(20,0);
HUGEINT, UHUGEINT → numeric(39,0); FLOAT → real; DOUBLE → double precision;
DECIMAL(p,s) → numeric(p,s); VARCHAR → text; UUID → uuid; JSON → jsonb; BLOB → bytea;
DATE → date; TIME → time; TIME WITH TIME ZONE → timetz; TIMESTAMP, TIMESTAMP_S/_MS/_NS →
timestamp; TIMESTAMP WITH TIME ZONE → timestamptz; INTERVAL → interval; lists, arrays,
structs, maps and unions → jsonb; anything else (ENUM, BIT, ...) → text.
"""

from __future__ import annotations

import io
import logging
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import psycopg2
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg2 import sql
from psycopg2.extensions import connection as PgConnection
from psycopg2.extensions import cursor as PgCursor

from duckherd_jobs.fault_points import pause_point
from duckherd_jobs.publish.errors import PublishError
from duckherd_jobs.publish.feed import BatchFeed
from duckherd_jobs.publish.mart import Column, Mart
from duckherd_jobs.redaction import describe_error

log = logging.getLogger("duckherd.jobs.publish")

SWAP_LOCK_TIMEOUT = "30s"
CSV_BATCH_ROWS = 65_536
_CSV_OPTIONS = pacsv.WriteOptions(include_header=False)

_SCALAR_TYPES = {
    "BOOLEAN": "boolean",
    "TINYINT": "smallint",
    "SMALLINT": "smallint",
    "UTINYINT": "smallint",
    "INTEGER": "integer",
    "USMALLINT": "integer",
    "BIGINT": "bigint",
    "UINTEGER": "bigint",
    "UBIGINT": "numeric(20,0)",
    "HUGEINT": "numeric(39,0)",
    "UHUGEINT": "numeric(39,0)",
    "FLOAT": "real",
    "DOUBLE": "double precision",
    "VARCHAR": "text",
    "UUID": "uuid",
    "JSON": "jsonb",
    "BLOB": "bytea",
    "DATE": "date",
    "TIME": "time",
    "TIME WITH TIME ZONE": "timetz",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP_S": "timestamp",
    "TIMESTAMP_MS": "timestamp",
    "TIMESTAMP_NS": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "INTERVAL": "interval",
}
# Arrow's CSV writer renders these exactly as PostgreSQL reads them; the rest become text first.
_NATIVE_IN_CSV = {
    "BOOLEAN", "TINYINT", "SMALLINT", "UTINYINT", "INTEGER", "USMALLINT", "BIGINT",
    "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "VARCHAR",
}  # fmt: skip
_DECIMAL = re.compile(r"^DECIMAL\((\d+),(\d+)\)$")
_PRIVILEGES = {"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"}


def is_nested(duckdb_type: str) -> bool:
    return duckdb_type.endswith("]") or duckdb_type.startswith(("STRUCT(", "MAP(", "UNION("))


def postgres_type(duckdb_type: str) -> str:
    """The PostgreSQL column type for a DuckDB type (see the module docstring)."""
    decimal = _DECIMAL.match(duckdb_type)
    if decimal:
        return f"numeric({decimal.group(1)},{decimal.group(2)})"
    if is_nested(duckdb_type):
        return "jsonb"
    return _SCALAR_TYPES.get(duckdb_type, "text")


def csv_expression(column: Column) -> str:
    """The DuckDB expression whose value PostgreSQL's CSV COPY reads as `postgres_type`."""
    if column.type in _NATIVE_IN_CSV or _DECIMAL.match(column.type):
        return column.sql
    if column.type == "BLOB":
        return f"'\\x' || hex({column.sql})"  # bytea hex input format
    if is_nested(column.type):
        return f"CAST(to_json({column.sql}) AS VARCHAR)"
    return f"CAST({column.sql} AS VARCHAR)"


@dataclass(frozen=True)
class PostgresPayload:
    rows: int
    csv: BatchFeed[bytes]
    columns: tuple[Column, ...]


def read_postgres_payload(
    connection: duckdb.DuckDBPyConnection, warehouse: Path, mart: Mart
) -> PostgresPayload:
    """Count the rows now; render them as COPY's CSV in a background feed."""
    rows = connection.execute(f"SELECT count(*) FROM {mart.sql}").fetchall()[0][0]
    select = ", ".join(f"{csv_expression(column)} AS {column.sql}" for column in mart.columns)
    feed = BatchFeed(warehouse, f"SELECT {select} FROM {mart.sql}", render_csv, CSV_BATCH_ROWS)
    return PostgresPayload(rows=int(rows), csv=feed, columns=mart.columns)


def render_csv(batch: pa.RecordBatch) -> bytes:
    """COPY's CSV: an unquoted empty field is NULL, a quoted one ("") the empty string; Arrow's
    writer quotes every string, so the two stay apart."""
    sink = io.BytesIO()
    pacsv.write_csv(batch, sink, _CSV_OPTIONS)
    return sink.getvalue()


class CsvStream:
    """The file `copy_expert` reads: one rendered batch per read."""

    def __init__(self, batches: Iterable[bytes]) -> None:
        self._batches = iter(batches)

    def read(self, size: int = -1) -> bytes:
        for data in self._batches:
            if data:
                return data
        return b""

    def readline(self, size: int = -1) -> bytes:  # the file protocol psycopg2 is typed with
        return self.read(size)


@dataclass(frozen=True)
class PostgresPublication:
    """One mart to one PostgreSQL table."""

    table: str
    schema: str
    target_table: str
    dsn: str
    secret_name: str
    payload: PostgresPayload
    run_id: str
    pipeline: str
    published_at: str

    @property
    def label(self) -> str:
        return f"postgres:{self.schema}.{self.target_table}"

    def close(self) -> None:
        self.payload.csv.close()

    def publish(self) -> int:
        try:
            connection = psycopg2.connect(
                self.dsn, connect_timeout=10, application_name="duckherd-publish"
            )
        except Exception as error:
            raise PublishError(
                f"{self.label}: cannot connect with the DSN from Secret {self.secret_name}: "
                f"{describe_error(error, [self.dsn])}"
            ) from None
        try:
            with connection:  # one transaction: commit on success, roll back on any error
                self._publish(connection)
        except Exception as error:
            raise PublishError(
                f"{self.label}: {describe_error(error, [self.dsn])} (previous table kept)"
            ) from None
        finally:
            connection.close()
        log.info("published %s to %s: %s rows", self.table, self.label, self.payload.rows)
        return self.payload.rows

    def _publish(self, connection: PgConnection) -> None:
        suffix = uuid.uuid4().hex[:12]
        schema = sql.Identifier(self.schema)
        target = sql.Identifier(self.schema, self.target_table)
        staging_name = f"_duckherd_staging_{suffix}"
        retired_name = f"_duckherd_retired_{suffix}"
        staging = sql.Identifier(self.schema, staging_name)
        with connection.cursor() as cursor:
            self._ensure_schema(cursor, schema)
            cursor.execute(
                sql.SQL("CREATE TABLE {} ({})").format(staging, self._column_definitions())
            )
            self._copy(cursor, staging)
            pause_point("publish.postgres.copied")
            grants = self._grants(cursor, target)
            cursor.execute(
                sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(SWAP_LOCK_TIMEOUT))
            )
            cursor.execute(
                sql.SQL("ALTER TABLE IF EXISTS {} RENAME TO {}").format(
                    target, sql.Identifier(retired_name)
                )
            )
            cursor.execute(
                sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                    staging, sql.Identifier(self.target_table)
                )
            )
            self._drop_retired(cursor, sql.Identifier(self.schema, retired_name))
            for statement in grants:
                cursor.execute(statement)
            cursor.execute(
                sql.SQL("COMMENT ON TABLE {} IS {}").format(target, sql.Literal(self._comment()))
            )
            pause_point("publish.postgres.swapped")

    def _ensure_schema(self, cursor: PgCursor, schema: sql.Identifier) -> None:
        # CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege even when the schema exists.
        cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [self.schema])
        if cursor.fetchone() is None:
            cursor.execute(sql.SQL("CREATE SCHEMA {}").format(schema))

    def _column_definitions(self) -> sql.Composable:
        return sql.SQL(", ").join(
            sql.SQL("{} {}").format(
                sql.Identifier(column.name), sql.SQL(postgres_type(column.type))
            )
            for column in self.payload.columns
        )

    def _copy(self, cursor: PgCursor, staging: sql.Identifier) -> None:
        columns = sql.SQL(", ").join(sql.Identifier(c.name) for c in self.payload.columns)
        statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(staging, columns)
        cursor.copy_expert(statement, CsvStream(self.payload.csv), size=1 << 20)
        if cursor.rowcount not in (-1, self.payload.rows):
            raise PublishError(f"COPY loaded {cursor.rowcount} rows, expected {self.payload.rows}")

    def _grants(self, cursor: PgCursor, target: sql.Identifier) -> list[sql.Composable]:
        """GRANTs that give the new table the privileges others held on the old one."""
        cursor.execute(
            "SELECT a.grantee = 0, r.rolname, a.privilege_type, a.is_grantable "
            "FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a "
            "LEFT JOIN pg_roles r ON r.oid = a.grantee "
            "WHERE c.oid = to_regclass(%s) AND a.grantee <> c.relowner",
            [target.as_string(cursor)],
        )
        statements: list[sql.Composable] = []
        for public, role, privilege, grantable in cursor.fetchall():
            if privilege not in _PRIVILEGES:
                continue
            grantee = sql.SQL("PUBLIC") if public else sql.Identifier(role)
            option = sql.SQL(" WITH GRANT OPTION") if grantable else sql.SQL("")
            statements.append(
                sql.SQL("GRANT {} ON {} TO {}{}").format(
                    sql.SQL(privilege), target, grantee, option
                )
            )
        return statements

    def _drop_retired(self, cursor: PgCursor, retired: sql.Identifier) -> None:
        try:
            cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(retired))
        except psycopg2.errors.DependentObjectsStillExist as error:
            raise PublishError(
                f"objects depend on {self.schema}.{self.target_table} "
                f"({' '.join(str(error.pgerror or error).split())}); drop or recreate them "
                "around the publish, or publish to a table nothing depends on"
            ) from None

    def _comment(self) -> str:
        return (
            f"Published by duckherd: pipeline {self.pipeline}, table {self.table}, "
            f"run {self.run_id}, at {self.published_at}"
        )
