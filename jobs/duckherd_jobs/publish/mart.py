"""A mart table in the warehouse: its name and its columns."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from duckherd_jobs.publish.errors import PublishInputError
from duckherd_jobs.sql import qualified, quote_identifier, table_name


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # the DuckDB type as DESCRIBE prints it, e.g. DECIMAL(12,2), INTEGER[]

    @property
    def sql(self) -> str:
        return quote_identifier(self.name)


@dataclass(frozen=True)
class Mart:
    name: str  # `schema.table`
    columns: tuple[Column, ...]

    @property
    def sql(self) -> str:
        return qualified(self.name)


def describe_mart(connection: duckdb.DuckDBPyConnection, table: str, field: str) -> Mart:
    name = table_name(table)
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
