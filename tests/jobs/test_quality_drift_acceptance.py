"""Issue 13's drift acceptance, at the jobs level with real Redis and PostgreSQL.

The example pipeline runs against the demo source and publishes; then the source serves the
same customers with `total_revenue` shifted by 30% (same row count, every value still in
range) and they are all re-delivered: only the drift check on monthly_ltv fails, publish is
blocked, and the previously published version stays in Redis and PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg2
import pytest
import redis as redis_client

from duckherd.summary import StageSummary
from duckherd_jobs.context import StageContext
from duckherd_jobs.demo_source import DemoSource, default_as_of, source_url_env
from duckherd_jobs.runner import apply_source_url_overrides, load_manifest, run_stage
from duckherd_jobs.warehouse import connect
from tests.services import PostgresServer, RedisServer

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "examples" / "customer-analytics" / "pipeline.yaml"
CUSTOMERS = 300
DRIFT_CHECK = "monthly LTV distribution stable"


def run_pipeline(
    warehouse: Path, source: str, redis: RedisServer, postgres: PostgresServer, run_id: str
) -> dict[str, StageSummary]:
    env = {
        **source_url_env(source),
        "DUCKHERD_SECRET_DUCKHERD_CACHE_URL": redis.url(),
        "DUCKHERD_SECRET_DUCKHERD_APPDB_DSN": postgres.dsn(),
    }
    pipeline = apply_source_url_overrides(load_manifest(MANIFEST), env)
    ctx = StageContext(
        pipeline=pipeline, warehouse=warehouse, run_id=run_id, env=env, lock_timeout_seconds=60
    )
    summaries: dict[str, StageSummary] = {}
    for stage in pipeline.spec.stages():
        summaries[stage] = run_stage(stage, ctx)
        if not summaries[stage].ok:
            break
    return summaries


def published_revenue(redis: RedisServer, postgres: PostgresServer) -> tuple[str, float]:
    """The run id Redis serves and PostgreSQL's total revenue."""
    client = redis_client.Redis.from_url(redis.url(), decode_responses=True)
    try:
        metas = [json.loads(client.get(key) or "{}") for key in client.scan_iter("*:meta")]
    finally:
        client.close()
    (meta,) = [m for m in metas if m.get("table") == "marts.customer_analytics"]
    with psycopg2.connect(postgres.dsn()) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT sum(total_revenue) FROM analytics.customer_analytics")
        row = cursor.fetchone()
    assert row is not None
    return str(meta["runId"]), float(row[0])


def test_a_shifted_revenue_distribution_fails_only_the_drift_check_and_blocks_publish(
    tmp_path: Path, redis: RedisServer, postgres: PostgresServer
) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    as_of = default_as_of()  # both sources: the same customers at the same moment
    with DemoSource(CUSTOMERS, as_of=as_of) as source:
        first = run_pipeline(warehouse, source, redis, postgres, "run-1")
    assert all(summary.ok for summary in first.values()), first
    assert first["check"].checks is not None
    drift = {r.name: r for r in first["check"].checks.results}[DRIFT_CHECK]
    assert (drift.success, drift.observed) == (True, "no baseline")
    served_before = published_revenue(redis, postgres)
    assert served_before[0] == "run-1"

    # The shifted source re-delivers every customer (a full re-sync): same rows, new revenue.
    with connect(warehouse) as connection:
        connection.execute("DELETE FROM _duckherd.state")
    with DemoSource(CUSTOMERS, as_of=as_of, revenue_scale=1.3) as source:
        second = run_pipeline(warehouse, source, redis, postgres, "run-2")

    assert second["ingest"].ok and second["transform"].ok
    check = second["check"]
    assert check.checks is not None
    failed = [r for r in check.checks.results if not r.success]
    assert [r.name for r in failed] == [DRIFT_CHECK], failed
    assert (failed[0].observed or "").startswith("mean_change_pct 30")
    assert check.tables["marts.customer_analytics"].rows == CUSTOMERS
    assert not check.ok
    # In the operator's chain publish never starts after a failed check stage; run by hand,
    # the gate refuses it. Either way the served version is run-1's.
    publish = run_stage(
        "publish",
        StageContext(
            pipeline=apply_source_url_overrides(load_manifest(MANIFEST), {}),
            warehouse=warehouse,
            run_id="run-2",
            env={
                "DUCKHERD_SECRET_DUCKHERD_CACHE_URL": redis.url(),
                "DUCKHERD_SECRET_DUCKHERD_APPDB_DSN": postgres.dsn(),
            },
            lock_timeout_seconds=60,
        ),
    )
    assert publish.blocked
    assert DRIFT_CHECK in (publish.error or "")
    assert published_revenue(redis, postgres) == served_before
