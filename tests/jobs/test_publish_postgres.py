"""Publishing marts to a real PostgreSQL server: COPY, atomic swap, types, failures, secrets."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from psycopg2.extensions import connection as PgConnection

from duckherd.summary import PublishedTarget, encode
from duckherd_jobs.publish import run_publish
from duckherd_jobs.runner import run_stage
from tests.jobs.test_publish_support import (
    POSTGRES_ENV,
    build_mart,
    context,
    customers_select,
    pipeline,
    postgres_entry,
)
from tests.services import PostgresServer, free_port

pytestmark = pytest.mark.services


@pytest.fixture
def pg(postgres: PostgresServer) -> Iterator[PgConnection]:
    connection = psycopg2.connect(postgres.dsn())
    connection.autocommit = True
    yield connection
    connection.close()


@pytest.fixture
def schema(pg: PgConnection, request: pytest.FixtureRequest) -> Iterator[str]:
    """A schema of its own per test, dropped afterwards."""
    name = "t_" + request.node.name.removeprefix("test_")[:40].strip("[]").replace("-", "_")
    name = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name).lower()
    with pg.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    yield name
    with pg.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def query(pg: PgConnection, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    with pg.cursor() as cursor:
        cursor.execute(statement, params)
        return list(cursor.fetchall())


def leftover_tables(pg: PgConnection, schema: str) -> list[str]:
    return [
        row[0]
        for row in query(
            pg, "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", [schema]
        )
        if row[0].startswith("_duckherd")
    ]


def test_copies_rows_with_column_types_mapped_from_duckdb(
    tmp_path: Path, postgres: PostgresServer, pg: PgConnection, schema: str
) -> None:
    warehouse = tmp_path / "w.duckdb"
    build_mart(
        warehouse,
        """
        SELECT * FROM (VALUES
            (1::BIGINT, 'Ada, "the first"', ''::VARCHAR, 12.50::DECIMAL(10, 2), true,
             DATE '2024-05-01', TIMESTAMPTZ '2024-05-01 10:00:00+00',
             TIMESTAMP '2024-05-01 10:00:00', '\\xAB\\x00'::BLOB, [1, 2], {'k': 'v'},
             '{"a": 1}'::JSON, 2.5::DOUBLE, 7::UTINYINT, INTERVAL 3 DAY,
             '5b1f0a3c-8b0e-4a0e-9a39-1f2f3c4d5e6f'::UUID,
             340282366920938463463374607431768211455::UHUGEINT),
            (2::BIGINT, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
             'nan'::DOUBLE, NULL, NULL, NULL, NULL)
        ) t(id, name, note, revenue, active, since, seen_at, local_at, raw, tags, attrs, doc, score,
            tiny, span, uid, big)
        """,
    )
    spec = pipeline([postgres_entry(schema=schema, table="customer_facts")])

    summary = run_publish(context(warehouse, spec, {POSTGRES_ENV: postgres.dsn()}))

    assert summary.ok, summary.error
    assert summary.published == [
        PublishedTarget(table="marts.customers", target=f"postgres:{schema}.customer_facts", rows=2)
    ]
    types = dict(
        query(
            pg,
            "SELECT column_name, format_type(atttypid, atttypmod) FROM information_schema.columns "
            "JOIN pg_attribute ON attrelid = to_regclass(table_schema || '.' || table_name) "
            "AND attname = column_name WHERE table_schema = %s AND table_name = 'customer_facts'",
            [schema],
        )
    )
    assert types == {
        "id": "bigint", "name": "text", "note": "text", "revenue": "numeric(10,2)",
        "active": "boolean", "since": "date", "seen_at": "timestamp with time zone",
        "local_at": "timestamp without time zone", "raw": "bytea", "tags": "jsonb",
        "attrs": "jsonb", "doc": "jsonb", "score": "double precision", "tiny": "smallint",
        "span": "interval", "uid": "uuid", "big": "numeric(39,0)",
    }  # fmt: skip
    first, second = query(pg, f"SELECT * FROM {schema}.customer_facts ORDER BY id")
    assert first[:8] == (
        1, 'Ada, "the first"', "", Decimal("12.50"), True, date(2024, 5, 1),
        datetime(2024, 5, 1, 10, tzinfo=UTC), datetime(2024, 5, 1, 10),
    )  # fmt: skip
    assert bytes(first[8]) == b"\xab\x00"
    assert first[9:13] == ([1, 2], {"k": "v"}, {"a": 1}, 2.5)
    assert str(first[16]) == "340282366920938463463374607431768211455"
    assert second[1:3] == (None, None), "NULL and the empty string stay apart"
    assert str(second[12]) == "nan"


def test_rerun_is_idempotent_and_leaves_no_staging_tables(
    tmp_path: Path, postgres: PostgresServer, pg: PgConnection, schema: str
) -> None:
    warehouse = tmp_path / "w.duckdb"
    build_mart(warehouse, customers_select(3000, 1))
    ctx = context(
        warehouse, pipeline([postgres_entry(schema=schema)]), {POSTGRES_ENV: postgres.dsn()}
    )

    first = run_publish(ctx)
    content = query(pg, f"SELECT * FROM {schema}.customers ORDER BY customer_id")
    second = run_publish(ctx)

    assert first.ok and second.ok
    assert first.published == second.published
    assert query(pg, f"SELECT * FROM {schema}.customers ORDER BY customer_id") == content
    assert len(content) == 3000
    assert leftover_tables(pg, schema) == []
    comment = query(pg, "SELECT obj_description(%s::regclass)", [f"{schema}.customers"])[0][0]
    assert "pipeline analytics/shop, table marts.customers, run run-1" in comment


def test_the_swap_keeps_privileges_granted_on_the_published_table(
    tmp_path: Path, postgres: PostgresServer, pg: PgConnection, schema: str
) -> None:
    warehouse = tmp_path / "w.duckdb"
    build_mart(warehouse, customers_select(3, 1))
    ctx = context(
        warehouse, pipeline([postgres_entry(schema=schema)]), {POSTGRES_ENV: postgres.dsn()}
    )
    assert run_publish(ctx).ok
    with pg.cursor() as cursor:
        cursor.execute("DROP ROLE IF EXISTS dashboard_reader")
        cursor.execute("CREATE ROLE dashboard_reader")
        cursor.execute(f"GRANT SELECT ON {schema}.customers TO dashboard_reader")
        cursor.execute(f"GRANT SELECT ON {schema}.customers TO PUBLIC")
    try:
        assert run_publish(ctx).ok

        grants = query(
            pg,
            "SELECT grantee, privilege_type FROM information_schema.role_table_grants "
            "WHERE table_schema = %s AND table_name = 'customers' AND grantee <> current_user "
            "ORDER BY 1",
            [schema],
        )
        assert grants == [("PUBLIC", "SELECT"), ("dashboard_reader", "SELECT")]
    finally:
        with pg.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {schema}.customers")
            cursor.execute("DROP ROLE IF EXISTS dashboard_reader")


class Reader(threading.Thread):
    """Counts and checks the published table in a loop, in its own connection."""

    def __init__(self, dsn: str, table: str, rows_by_generation: dict[int, int]) -> None:
        super().__init__(daemon=True)
        self.connection = psycopg2.connect(dsn)
        self.connection.autocommit = True
        self.table = table
        self.rows_by_generation = rows_by_generation
        self.seen: list[int] = []
        self.problems: list[str] = []
        self.polls = 0
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.polls += 1
                self.poll()
        except Exception as error:
            self.problems.append(f"reader failed: {error}")
        finally:
            self.connection.close()

    def poll(self) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*), min(generation), max(generation) FROM {self.table}")
            count, low, high = cursor.fetchone() or (0, None, None)
        if low != high or count != self.rows_by_generation.get(low, -1):
            self.problems.append(f"{count} rows of generations {low}..{high}")
        if not self.seen or self.seen[-1] != low:
            self.seen.append(low)

    def wait_for(self, generation: int) -> None:
        deadline = time.monotonic() + 30
        while generation not in self.seen and time.monotonic() < deadline and self.is_alive():
            self.stop.wait(0.01)
        assert generation in self.seen, f"the reader never saw {generation}: {self.problems}"


def test_readers_never_see_a_partial_or_mixed_table(
    tmp_path: Path, postgres: PostgresServer, schema: str
) -> None:
    warehouse = tmp_path / "w.duckdb"
    env = {POSTGRES_ENV: postgres.dsn()}
    spec = pipeline([postgres_entry(schema=schema)])
    rows = {1: 20_000, 2: 120_000, 3: 90_000}
    build_mart(warehouse, customers_select(rows[1], 1))
    assert run_publish(context(warehouse, spec, env)).ok
    reader = Reader(postgres.dsn(), f"{schema}.customers", rows)
    reader.start()
    polls_during_publish = []
    try:
        reader.wait_for(1)
        for generation in (2, 3):
            build_mart(warehouse, customers_select(rows[generation], generation))
            polls_before = reader.polls
            summary = run_publish(context(warehouse, spec, env, run_id=f"gen{generation}"))
            polls_during_publish.append(reader.polls - polls_before)
            assert summary.ok, summary.error
            reader.wait_for(generation)
    finally:
        reader.stop.set()
        reader.join(timeout=30)

    assert reader.problems == []
    assert reader.seen == [1, 2, 3]
    assert max(polls_during_publish) > 0, "the reader must query while a publish is under way"


def test_a_server_that_is_down_fails_clearly(
    tmp_path: Path, postgres: PostgresServer, pg: PgConnection, schema: str
) -> None:
    warehouse = tmp_path / "w.duckdb"
    build_mart(warehouse, customers_select(3, 1))
    down = postgres.dsn().replace(f"port={postgres.port}", f"port={free_port()}")
    spec = pipeline([postgres_entry(schema=schema)])

    summary = run_publish(context(warehouse, spec, {POSTGRES_ENV: down}))

    assert not summary.ok
    assert f"postgres:{schema}.customers: cannot connect" in (summary.error or "")
    assert "Connection refused" in (summary.error or "")
    assert "Secret appdb/dsn" in (summary.error or "")


def test_losing_the_server_mid_publish_keeps_the_previous_table(
    tmp_path: Path, postgres: PostgresServer, pg: PgConnection, schema: str
) -> None:
    """A reader's lock holds the swap; the publisher's backend is killed while it waits."""
    warehouse = tmp_path / "w.duckdb"
    env = {POSTGRES_ENV: postgres.dsn()}
    spec = pipeline([postgres_entry(schema=schema)])
    build_mart(warehouse, customers_select(50, 1))
    assert run_publish(context(warehouse, spec, env)).ok
    build_mart(warehouse, customers_select(5000, 2))
    blocker = psycopg2.connect(postgres.dsn())
    killed: list[int] = []

    def kill_the_publisher_once_it_waits() -> None:
        for _ in range(3000):
            waiting = query(
                pg,
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'duckherd-publish' "
                "AND wait_event_type = 'Lock'",
            )
            if waiting:
                query(pg, "SELECT pg_terminate_backend(%s)", [waiting[0][0]])
                killed.append(waiting[0][0])
                return
            time.sleep(0.01)

    try:
        with blocker.cursor() as cursor:  # an open transaction that read the table
            cursor.execute(f"SELECT count(*) FROM {schema}.customers")
        killer = threading.Thread(target=kill_the_publisher_once_it_waits)
        killer.start()
        summary = run_publish(context(warehouse, spec, env, run_id="run-2"))
        killer.join()
    finally:
        blocker.rollback()
        blocker.close()

    assert killed, "the publisher never waited on the lock"
    assert not summary.ok
    assert "previous table kept" in (summary.error or "")
    assert query(pg, f"SELECT count(*), max(generation) FROM {schema}.customers") == [(50, 1)]
    assert leftover_tables(pg, schema) == []


def test_views_on_the_table_block_the_swap_with_a_clear_error(
    tmp_path: Path, postgres: PostgresServer, pg: PgConnection, schema: str
) -> None:
    warehouse = tmp_path / "w.duckdb"
    env = {POSTGRES_ENV: postgres.dsn()}
    spec = pipeline([postgres_entry(schema=schema)])
    build_mart(warehouse, customers_select(5, 1))
    assert run_publish(context(warehouse, spec, env)).ok
    with pg.cursor() as cursor:
        cursor.execute(f"CREATE VIEW {schema}.big_customers AS SELECT * FROM {schema}.customers")
    build_mart(warehouse, customers_select(7, 2))

    summary = run_publish(context(warehouse, spec, env))

    assert not summary.ok
    assert "objects depend on" in (summary.error or "")
    assert "big_customers" in (summary.error or "")
    assert query(pg, f"SELECT count(*) FROM {schema}.big_customers") == [(5,)]
    assert leftover_tables(pg, schema) == []


@pytest.mark.parametrize(
    "make_dsn",
    [
        lambda server, secret: server.dsn().replace(server.password, secret),
        lambda server, secret: (
            f"postgresql://{server.user}:{secret}@127.0.0.1:{server.port}/{server.database}"
        ),
        lambda server, secret: f"host=127.0.0.1 password={secret} port=notaport",
        lambda server, secret: f"postgresql://{server.user}:{secret}@127.0.0.1:{server.port}/x?bad",
    ],
)
def test_wrong_credentials_fail_clearly_without_revealing_the_secret(
    tmp_path: Path,
    postgres: PostgresServer,
    schema: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    make_dsn: Any,
) -> None:
    secret = "Wr0ng-Pa55-do-not-print"
    warehouse = tmp_path / "w.duckdb"
    build_mart(warehouse, customers_select(3, 1))
    spec = pipeline([postgres_entry(schema=schema)])
    env = {POSTGRES_ENV: make_dsn(postgres, secret)}

    with caplog.at_level("DEBUG"):
        summary = run_stage("publish", context(warehouse, spec, env))

    assert not summary.ok
    assert "Secret appdb/dsn" in (summary.error or "")
    captured = capfd.readouterr()
    for place in (summary.model_dump_json(), encode(summary).decode(), caplog.text,
                  captured.out, captured.err):  # fmt: skip
        assert secret not in place
    assert "Wr0ng" not in caplog.text + (summary.error or "")
