"""Writing names and text into SQL: the one place identifiers and literals are quoted.

DuckDB and PostgreSQL quote identifiers the same way (double quotes, an inner quote doubled),
so one function serves both. It quotes any name faithfully (column names come from data, dbt
models and catalogs, spaces and quotes included), which is also what makes it safe: the name
cannot end the quoted identifier. Names from the spec are validated at the door
(`duckherd.api` patterns), not here.
"""

from __future__ import annotations

from duckherd.contract import MARTS_SCHEMA

DEFAULT_SCHEMA = MARTS_SCHEMA
"""The schema of a table named without one (`customers` is `marts.customers`)."""


def quote_identifier(name: str) -> str:
    """`name` as a quoted SQL identifier (DuckDB and PostgreSQL)."""
    return '"' + name.replace('"', '""') + '"'


def sql_string(text: str) -> str:
    """A SQL string literal (for the few places that take no bound parameter)."""
    return "'" + text.replace("'", "''") + "'"


def table_name(table: str, default_schema: str = DEFAULT_SCHEMA) -> str:
    """`schema.table`, the default schema applied to a bare table name."""
    schema, _, name = table.rpartition(".")
    return f"{schema or default_schema}.{name}"


def qualified(table: str, default_schema: str = DEFAULT_SCHEMA) -> str:
    """`"schema"."table"`: `table_name` quoted, ready for a FROM clause."""
    schema, _, name = table.rpartition(".")
    return f"{quote_identifier(schema or default_schema)}.{quote_identifier(name)}"
