"""The dashboard tests' world: the example's publish stage writing to real PostgreSQL and Redis.

Fixtures for tests/dashboard (its conftest imports them) and the cluster test
(tests/e2e/test_dashboard.py).

A test builds a `marts.customer_analytics` in a real DuckDB warehouse, records the check stage
(passed or failed), and runs the real publish stage with the example's manifest: the dashboard
then reads exactly what a cluster's publish would have served.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
import redis as redis_client
import streamlit as st
from psycopg2 import sql

from duckherd.api import DataPipeline
from duckherd.summary import StageSummary
from duckherd_jobs.context import StageContext
from duckherd_jobs.runner import load_manifest, run_stage
from tests.jobs.test_publish_support import build_mart, record_check
from tests.services import PostgresServer, RedisServer

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "customer-analytics"
DASHBOARD = EXAMPLE / "dashboard"
APP = DASHBOARD / "app.py"
sys.path.insert(0, str(DASHBOARD))  # the app's own module, as Streamlit puts it on the path

from serving_layer import settings_from_manifest  # noqa: E402

MART = "marts.customer_analytics"
DATABASE = "dashboard"
REDIS_DB = 7  # the session's Redis is shared by the test layers: a database of our own


def example() -> DataPipeline:
    return load_manifest(EXAMPLE / "pipeline.yaml")


def mart_select(rows: int, generation: int) -> str:
    """`rows` customers shaped like the example's mart; `generation` changes every revenue.

    Every 25th customer is younger than a month (no monthly LTV), as in the real mart.
    """
    return f"""
        SELECT i::BIGINT AS customer_id, 'Customer ' || i AS customer_name,
               'customer' || i || '@example.com' AS email, ['US', 'DE', 'FR', 'BR'][1 + i % 4]
               AS country, ['SMB', 'Mid-Market', 'Enterprise'][1 + i % 3] AS segment,
               true AS is_active, TIMESTAMPTZ '2021-01-01 00:00:00+00' AS created_at,
               now() AS updated_at, (1 + i % 40)::INTEGER AS orders_count,
               ((i * 7919) % 100000 / 10.0 + {generation})::DECIMAL(18, 2) AS total_revenue,
               (i % 25)::BIGINT AS months_active,
               total_revenue / nullif(months_active, 0) AS monthly_ltv,
               total_revenue / nullif(orders_count, 0) AS average_order_value
        FROM range(1, {rows} + 1) r(i)
    """


@dataclass(frozen=True)
class Serving:
    """The example's publish targets on the session's servers, and publishing to them."""

    postgres: PostgresServer
    redis: RedisServer
    warehouse: Path

    @property
    def dsn(self) -> str:
        return self.postgres.dsn(database=DATABASE)

    @property
    def redis_url(self) -> str:
        return self.redis.url(db=REDIS_DB)

    def dashboard_env(self) -> dict[str, str]:
        """What `make dashboard` and the cluster's Deployment give the app."""
        return {
            **settings_from_manifest(example(), MART, "default"),
            "DASHBOARD_POSTGRES_DSN": self.dsn,
            "DASHBOARD_REDIS_URL": self.redis_url,
        }

    def publish(
        self,
        run_id: str,
        rows: int,
        *,
        checks_pass: bool = True,
        redis_only: bool = False,
        namespace: str | None = None,
    ) -> StageSummary:
        """A run whose mart has `rows` customers: its checks, then the real publish stage
        (of the pipeline in `namespace`, which names the Redis keys; local mode's default)."""
        build_mart(self.warehouse, mart_select(rows, generation=rows), table=MART)
        record_check(self.warehouse, run_id, [("customer_id unique", "error", checks_pass)])
        pipeline = example()
        pipeline.metadata.namespace = namespace
        if redis_only:
            pipeline.spec.publish = [entry for entry in pipeline.spec.publish if entry.redis]
        env = {
            "DUCKHERD_SECRET_DUCKHERD_CACHE_URL": self.redis_url,
            "DUCKHERD_SECRET_DUCKHERD_APPDB_DSN": self.dsn,
        }
        context = StageContext(
            pipeline=pipeline,
            warehouse=self.warehouse,
            run_id=run_id,
            env=env,
            lock_timeout_seconds=30,
        )
        return run_stage("publish", context)

    def query(self, statement: str) -> tuple[object, ...]:
        """One row straight from the published table (what the dashboard must agree with)."""
        with psycopg2.connect(self.dsn) as connection, connection.cursor() as cursor:
            cursor.execute(statement)
            row = cursor.fetchone()
        connection.close()
        assert row is not None
        return tuple(row)


@pytest.fixture(scope="session")
def dashboard_database(postgres: PostgresServer) -> str:
    connection = psycopg2.connect(postgres.dsn())
    connection.autocommit = True
    with connection.cursor() as cursor:
        # Idempotent: tests/dashboard and tests/e2e each register this session fixture, and
        # one pytest session (make test) runs both against the same PostgreSQL server.
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if cursor.fetchone() is None:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    connection.close()
    return DATABASE


@pytest.fixture
def serving(
    postgres: PostgresServer, redis: RedisServer, dashboard_database: str, tmp_path: Path
) -> Serving:
    """Empty targets (no table, no keys), an empty warehouse, and Streamlit's caches cleared."""
    world = Serving(postgres, redis, tmp_path / "customer-analytics.duckdb")
    with psycopg2.connect(world.dsn) as connection, connection.cursor() as cursor:
        cursor.execute("DROP SCHEMA IF EXISTS analytics CASCADE")
    connection.close()
    client = redis_client.Redis.from_url(world.redis_url)
    client.flushdb()
    client.close()
    st.cache_data.clear()
    st.cache_resource.clear()
    return world
