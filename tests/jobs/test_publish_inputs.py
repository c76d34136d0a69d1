"""Bad input fails before any target is written; type mapping and secret scrubbing."""

from __future__ import annotations

from pathlib import Path

import psycopg2
import pytest
import redis as redis_client

from duckherd_jobs.publish import run_publish
from duckherd_jobs.publish.errors import PublishInputError
from duckherd_jobs.publish.postgres_target import postgres_type
from duckherd_jobs.runner import run_stage
from duckherd_jobs.warehouse import connect
from tests.jobs.test_publish_support import (
    POSTGRES_ENV,
    REDIS_ENV,
    build_mart,
    context,
    customers_select,
    pipeline,
    postgres_entry,
    redis_entry,
)
from tests.services import PostgresServer, RedisServer


@pytest.mark.services
def test_a_missing_mart_fails_before_any_target_is_written(
    tmp_path: Path, redis: RedisServer
) -> None:
    warehouse = tmp_path / "w.duckdb"
    build_mart(warehouse, customers_select(3, 1))
    spec = pipeline([redis_entry(keyPrefix="inputs:first"), redis_entry("marts.nowhere")])

    summary = run_stage("publish", context(warehouse, spec, {REDIS_ENV: redis.url()}))

    assert not summary.ok
    assert "publish[1]: table marts.nowhere does not exist in the warehouse" in (
        summary.error or ""
    )
    client = redis_client.Redis.from_url(redis.url())
    assert client.exists("inputs:first:meta", "inputs:first:rows") == 0
    client.close()


def test_a_missing_secret_names_the_secret_and_env_var(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    build_mart(warehouse, customers_select(3, 1))
    spec = pipeline([postgres_entry()])

    summary = run_stage("publish", context(warehouse, spec, {}))

    assert not summary.ok
    assert "secret appdb/dsn is not available" in (summary.error or "")
    assert POSTGRES_ENV in (summary.error or "")


def test_a_missing_warehouse_says_so(tmp_path: Path) -> None:
    spec = pipeline([redis_entry()])

    with pytest.raises(PublishInputError, match="does not exist: nothing to publish"):
        run_publish(context(tmp_path / "absent.duckdb", spec, {REDIS_ENV: "redis://x"}))


def test_no_publish_entries_is_a_successful_no_op(tmp_path: Path) -> None:
    summary = run_publish(context(tmp_path / "absent.duckdb", pipeline([]), {}))

    assert summary.ok
    assert summary.published == []


@pytest.mark.parametrize(
    ("duckdb_type", "expected"),
    [
        ("INTEGER", "integer"),
        ("UBIGINT", "numeric(20,0)"),
        ("HUGEINT", "numeric(39,0)"),
        ("DECIMAL(18,3)", "numeric(18,3)"),
        ("DOUBLE", "double precision"),
        ("TIMESTAMP WITH TIME ZONE", "timestamptz"),
        ("TIMESTAMP_NS", "timestamp"),
        ("BLOB", "bytea"),
        ("VARCHAR[]", "jsonb"),
        ("INTEGER[3]", "jsonb"),
        ("STRUCT(a INTEGER, b VARCHAR)", "jsonb"),
        ("MAP(VARCHAR, INTEGER)", "jsonb"),
        ("ENUM('a', 'b')", "text"),
        ("BIT", "text"),
    ],
)
def test_duckdb_types_map_to_postgres_types(duckdb_type: str, expected: str) -> None:
    assert postgres_type(duckdb_type) == expected


@pytest.mark.services
@pytest.mark.parametrize("target", ["redis", "postgres"])
def test_a_mart_that_fails_while_rendering_leaves_the_target_as_it_was(
    tmp_path: Path, redis: RedisServer, postgres: PostgresServer, target: str
) -> None:
    """A view that raises at row 90,000: the feed fails mid-stream, nothing is swapped."""
    warehouse = tmp_path / "w.duckdb"
    env = {REDIS_ENV: redis.url(), POSTGRES_ENV: postgres.dsn()}
    entry = (
        redis_entry(keyPrefix="inputs:failing")
        if target == "redis"
        else postgres_entry(schema="inputs_failing")
    )
    spec = pipeline([entry])
    build_mart(warehouse, customers_select(10, 1))
    drop_schema(postgres, "inputs_failing")
    assert run_publish(context(warehouse, spec, env)).ok
    with connect(warehouse) as connection:
        connection.execute("DROP TABLE marts.customers")
        connection.execute(
            "CREATE VIEW marts.customers AS SELECT i AS customer_id, "
            "CASE WHEN i = 90000 THEN error('row 90000 is broken') ELSE 'ok' END AS status "
            "FROM range(100000) r(i)"
        )

    summary = run_publish(context(warehouse, spec, env, run_id="run-2"))

    assert not summary.ok
    assert "row 90000 is broken" in (summary.error or "")
    try:
        assert published_rows(target, redis, postgres) == 10
    finally:
        drop_schema(postgres, "inputs_failing")


def drop_schema(postgres: PostgresServer, schema: str) -> None:
    connection = psycopg2.connect(postgres.dsn())
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    connection.close()


def published_rows(target: str, redis: RedisServer, postgres: PostgresServer) -> int:
    if target == "redis":
        client = redis_client.Redis.from_url(redis.url())
        try:
            assert client.keys("inputs:failing:staging:*") == []
            return int(client.hlen("inputs:failing:rows"))
        finally:
            client.close()
    with psycopg2.connect(postgres.dsn()) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM inputs_failing.customers")
        row = cursor.fetchone()
    connection.close()
    return int(row[0]) if row else -1
