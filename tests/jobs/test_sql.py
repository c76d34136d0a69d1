"""The one SQL quoting helper, against DuckDB itself: any name round-trips, none escapes."""

from __future__ import annotations

import duckdb
import pytest

from duckherd_jobs.sql import qualified, quote_identifier, sql_string, table_name

AWKWARD_NAMES = [
    "plain",
    "with space",
    'with "quotes"',
    "semi;colon",
    "ünïcode",
    'x"; DROP TABLE t; --',
]


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_a_quoted_identifier_names_exactly_that_column(name: str) -> None:
    connection = duckdb.connect()
    connection.execute(f"CREATE TABLE t ({quote_identifier(name)} INTEGER)")
    assert [row[0] for row in connection.execute("DESCRIBE t").fetchall()] == [name]


@pytest.mark.parametrize("text", ["it's", "''", "a'; DROP TABLE t; --"])
def test_a_string_literal_is_exactly_that_text(text: str) -> None:
    assert duckdb.connect().execute(f"SELECT {sql_string(text)}").fetchall() == [(text,)]


def test_a_bare_table_is_in_the_marts_schema() -> None:
    assert table_name("customers") == "marts.customers"
    assert table_name("staging.customers") == "staging.customers"
    assert qualified("customers") == '"marts"."customers"'
    assert qualified("raw.orders", default_schema="x") == '"raw"."orders"'


def test_qualified_reads_the_table() -> None:
    connection = duckdb.connect()
    connection.execute('CREATE SCHEMA marts; CREATE TABLE marts."odd name" AS SELECT 7 AS n')
    assert connection.execute(f"SELECT n FROM {qualified('odd name')}").fetchall() == [(7,)]
