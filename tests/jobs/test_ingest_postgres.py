"""The ingest stage against a real PostgreSQL server (COPY ... TO STDOUT)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from tests.jobs.ingest_support import columns, ingest, pipeline, query, snapshot
from tests.services import PostgresServer

DSN_ENV = "DUCKHERD_SECRET_PG_DSN"


@pytest.fixture
def table(postgres: PostgresServer) -> Iterator[str]:
    name = f"orders_{uuid.uuid4().hex[:8]}"
    _execute(
        postgres,
        f"""CREATE TABLE {name} (
            id bigint PRIMARY KEY, note text, amount numeric(12,2), ratio double precision,
            paid boolean, day date, updated_at timestamptz, payload jsonb, code uuid
        )""",
    )
    yield name
    _execute(postgres, f"DROP TABLE {name}")


def _execute(postgres: PostgresServer, sql: str, rows: list[tuple[Any, ...]] | None = None) -> None:
    with psycopg2.connect(postgres.dsn()) as connection, connection.cursor() as cursor:
        if rows is None:
            cursor.execute(sql)
        else:
            cursor.executemany(sql, rows)
    connection.close()


def _insert(postgres: PostgresServer, table: str, first: int, count: int, day: int = 1) -> None:
    rows = [
        (
            i,
            None if i % 5 == 0 else ("" if i % 7 == 0 else f'note {i}, "quoted"\nline two'),
            Decimal(i) + Decimal("0.25"),
            i / 3,
            i % 2 == 0,
            f"2026-01-{day:02d}",
            datetime(2026, 1, day, 12, 0, i % 60, tzinfo=UTC),
            '{"k": [1, 2]}',
            str(uuid.UUID(int=i)),
        )
        for i in range(first, first + count)
    ]
    _execute(postgres, f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)


def _source(table: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": "orders",
        "postgres": {"dsnSecretRef": {"name": "pg", "key": "dsn"}, "table": table},
        **fields,
    }


def test_a_table_arrives_with_postgres_types_nulls_and_empty_strings_intact(
    tmp_path: Path, postgres: PostgresServer, table: str
) -> None:
    _insert(postgres, table, 1, 70)
    warehouse = tmp_path / "warehouse.duckdb"
    summary = ingest(pipeline(_source(table)), warehouse, env={DSN_ENV: postgres.dsn()})
    assert summary.ok, summary.error
    assert summary.tables["raw.orders"].loaded == 70
    kinds = columns(warehouse, "raw.orders")
    assert {
        k: kinds[k] for k in ("id", "note", "amount", "ratio", "paid", "day", "updated_at")
    } == {
        "id": "BIGINT",
        "note": "VARCHAR",
        "amount": "DECIMAL(12,2)",
        "ratio": "DOUBLE",
        "paid": "BOOLEAN",
        "day": "DATE",
        "updated_at": "TIMESTAMP WITH TIME ZONE",
    }
    assert query(warehouse, "SELECT note, amount, ratio, paid FROM raw.orders WHERE id = 3") == [
        ('note 3, "quoted"\nline two', Decimal("3.25"), 1.0, False)
    ]
    assert query(
        warehouse,
        "SELECT count(*) FILTER (WHERE note IS NULL), count(*) FILTER (WHERE note = '') "
        "FROM raw.orders",
    ) == [(14, 8)]


def test_incremental_loads_only_rows_past_the_cursor(
    tmp_path: Path, postgres: PostgresServer, table: str
) -> None:
    _insert(postgres, table, 1, 20, day=1)
    warehouse = tmp_path / "warehouse.duckdb"
    spec = pipeline(_source(table, incremental={"cursorField": "updated_at"}))
    env = {DSN_ENV: postgres.dsn()}
    assert ingest(spec, warehouse, "run-1", env).tables["raw.orders"].loaded == 20
    _insert(postgres, table, 21, 5, day=2)
    second = ingest(spec, warehouse, "run-2", env)
    assert second.ok, second.error
    assert (second.tables["raw.orders"].loaded, second.tables["raw.orders"].rows) == (5, 25)
    assert query(warehouse, "SELECT min(id) FROM raw.orders WHERE _run_id = 'run-2'") == [(21,)]
    assert query(warehouse, "SELECT cursor_value FROM _duckherd.state") == [
        ("2026-01-02T12:00:25.000000Z",)
    ]


def test_a_text_cursor_with_a_quote_is_sent_as_a_parameter(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    name = f"people_{uuid.uuid4().hex[:8]}"
    _execute(postgres, f"CREATE TABLE {name} (name text)")
    _execute(postgres, f"INSERT INTO {name} VALUES (%s)", [("O'Brien",), ("Adams",)])
    warehouse = tmp_path / "warehouse.duckdb"
    spec = pipeline({**_source(name), "name": "people", "incremental": {"cursorField": "name"}})
    env = {DSN_ENV: postgres.dsn()}
    assert ingest(spec, warehouse, "run-1", env).tables["raw.people"].loaded == 2
    _execute(postgres, f"INSERT INTO {name} VALUES (%s)", [("O'Neil",), ("Baker",)])
    second = ingest(spec, warehouse, "run-2", env)
    assert second.ok, second.error
    assert query(warehouse, "SELECT name FROM raw.people WHERE _run_id = 'run-2'") == [("O'Neil",)]


def test_a_query_source_with_connection_fields_and_a_password_secret(
    tmp_path: Path, postgres: PostgresServer, table: str
) -> None:
    _insert(postgres, table, 1, 10)
    source = {
        "name": "paid",
        "postgres": {
            "connection": {
                "host": postgres.host,
                "port": postgres.port,
                "database": postgres.database,
                "user": postgres.user,
                "passwordSecretRef": {"name": "pg", "key": "password"},
                "sslMode": "disable",
            },
            "query": f"SELECT id, amount FROM {table} WHERE paid;",
        },
    }
    env = {"DUCKHERD_SECRET_PG_PASSWORD": postgres.password}
    summary = ingest(pipeline(source), tmp_path / "warehouse.duckdb", env=env)
    assert summary.ok, summary.error
    assert summary.tables["raw.paid"].loaded == 5


def test_a_wrong_password_fails_without_echoing_it(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    wrong = "not-the-password-4711"
    source = {
        "name": "paid",
        "postgres": {
            "dsnSecretRef": {"name": "pg", "key": "dsn"},
            "table": "whatever",
        },
    }
    dsn = postgres.dsn().replace(postgres.password, wrong)
    summary = ingest(pipeline(source), tmp_path / "warehouse.duckdb", env={DSN_ENV: dsn})
    assert not summary.ok
    assert summary.error is not None
    assert "source paid (postgres)" in summary.error
    assert wrong not in summary.model_dump_json()


def test_a_missing_table_fails_and_the_other_source_is_not_loaded_either(
    tmp_path: Path, postgres: PostgresServer, table: str
) -> None:
    _insert(postgres, table, 1, 10)
    warehouse = tmp_path / "warehouse.duckdb"
    env = {DSN_ENV: postgres.dsn()}
    good = _source(table, incremental={"cursorField": "updated_at"})
    assert ingest(pipeline(good), warehouse, "run-1", env).ok
    before = snapshot(warehouse)
    _insert(postgres, table, 11, 10, day=2)
    missing = {**_source("no_such_table"), "name": "missing"}
    summary = ingest(pipeline(good, missing), warehouse, "run-2", env)
    assert not summary.ok
    assert summary.error is not None
    assert "no_such_table" in summary.error
    assert snapshot(warehouse) == before
