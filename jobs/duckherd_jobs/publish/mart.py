"""A mart table in the warehouse: its name, its columns, and quoting its column names."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from duckherd_jobs.publish.errors import PublishInputError
from duckherd_jobs.warehouse import qualified


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # the DuckDB type as DESCRIBE prints it, e.g. DECIMAL(12,2), INTEGER[]

    @property
    def sql(self) -> str:
        return quote_column(self.name)


@dataclass(frozen=True)
class Mart:
    name: str  # `schema.table`
    columns: tuple[Column, ...]

    @property
    def sql(self) -> str:
        return qualified(self.name)


def normalize_table(table: str) -> str:
    """`schema.table`, with the default schema `marts` applied."""
    schema, _, name = table.rpartition(".")
    return f"{schema or 'marts'}.{name}"


def quote_column(name: str) -> str:
    """Column names come from dbt models, not from the spec: quote anything faithfully."""
    return '"' + name.replace('"', '""') + '"'


def describe_mart(connection: duckdb.DuckDBPyConnection, table: str, field: str) -> Mart:
    name = normalize_table(table)
    schema, _, relation = name.partition(".")
    found = connection.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, relation],
    ).fetchall()
    if not found[0][0]:
        raise PublishInputError(
            f"{field}: table {name} does not exist in the warehouse (did the transform stage "
            "build it?)"
        )
    rows = connection.execute(f"DESCRIBE SELECT * FROM {qualified(name)}").fetchall()
    return Mart(name, tuple(Column(str(row[0]), str(row[1])) for row in rows))
