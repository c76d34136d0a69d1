"""Serving on a real cluster: the example publishes its mart to Redis and PostgreSQL, and a
failed error-severity check holds publishing back (Published=False, Warning Event) while the
previously published version stays in place.

Redis and PostgreSQL are the real servers of the test session, listening on this machine;
stage pods reach them at the host address, with credentials from Secrets.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
import redis as redis_client

from duckherd_jobs.demo_source import DemoSource
from duckherd_operator.builders import run_now_job_name
from tests.e2e.conftest import Cluster, kubectl
from tests.e2e.operator_support import (
    Operator,
    apply_manifest,
    condition,
    delete_namespace,
    ensure_restricted_namespace,
    events_for,
    installed_operator,
    load_example,
    wait_run_finished,
)
from tests.services import PostgresServer, RedisServer

pytestmark = pytest.mark.e2e

NAME = "customer-analytics"
CUSTOMERS = 2_000


@pytest.fixture(scope="module")
def operator(cluster: Cluster) -> Iterator[Operator]:
    with installed_operator(cluster, release="duckherd-publish") as installed:
        yield installed


@pytest.fixture(scope="module")
def namespace(operator: Operator) -> Iterator[str]:
    name = f"e2e-publish-{uuid.uuid4().hex[:6]}"
    ensure_restricted_namespace(name)
    yield name
    kubectl("delete", "datapipelines", "--all", "-n", name, "--timeout=120s", check=False)
    delete_namespace(name)


@pytest.fixture(scope="module")
def example(
    cluster: Cluster, namespace: str, postgres: PostgresServer, redis: RedisServer
) -> Iterator[dict[str, Any]]:
    host = cluster.need_host_ip()
    secrets = {
        "duckherd-cache": {"url": redis.url(host=host, db=3)},
        "duckherd-appdb": {"dsn": postgres.dsn(host=host)},
    }
    for name, data in secrets.items():
        apply_manifest(
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data},
            namespace,
        )
    with DemoSource(CUSTOMERS, host=host) as api:
        manifest = load_example(api, publish=True)
        apply_manifest(manifest, namespace)
        yield manifest


def run_now(namespace: str) -> str:
    value = f"{time.time_ns()}"
    kubectl(
        "annotate",
        "datapipeline",
        NAME,
        "-n",
        namespace,
        f"duckherd.io/run-now={value}",
        "--overwrite",
    )
    return run_now_job_name(NAME, value)


def _redis_meta(server: RedisServer) -> dict[str, Any]:
    client = redis_client.Redis.from_url(server.url(db=3))
    keys = list(client.scan_iter("*:meta"))
    assert len(keys) == 1, keys
    meta: dict[str, Any] = json.loads(client.get(keys[0]) or "{}")
    return meta


def _postgres_rows(server: PostgresServer) -> int:
    with psycopg2.connect(server.dsn()) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM analytics.customer_analytics")
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def test_a_run_publishes_the_mart_to_both_targets(
    example: dict[str, Any], namespace: str, postgres: PostgresServer, redis: RedisServer
) -> None:
    run_id = run_now(namespace)
    pipeline = wait_run_finished(namespace, NAME, run_id)
    status = pipeline["status"]
    assert status["lastRun"]["result"] == "Succeeded", status["lastRun"]
    assert [s["stage"] for s in status["lastRun"]["stages"]] == [
        "ingest",
        "transform",
        "check",
        "publish",
    ]
    published = {(p["target"].split(":")[0], p["rows"]) for p in status["published"]}
    assert published == {("redis", CUSTOMERS), ("postgres", CUSTOMERS)}
    assert (condition(pipeline, "Published") or {}).get("status") == "True"
    assert (condition(pipeline, "DataReady") or {}).get("status") == "True"
    meta = _redis_meta(redis)
    assert (meta["rows"], meta["runId"]) == (CUSTOMERS, run_id)
    assert _postgres_rows(postgres) == CUSTOMERS


def test_failed_checks_block_publishing_and_keep_the_published_version(
    example: dict[str, Any], namespace: str, postgres: PostgresServer, redis: RedisServer
) -> None:
    before = _redis_meta(redis)
    impossible = {
        "table": "marts.customer_analytics",
        "name": "at most ten customers",
        "expectation": "expect_table_row_count_to_be_between",
        "kwargs": {"max_value": 10},
    }
    manifest = json.loads(json.dumps(example))
    manifest["spec"]["quality"]["checks"].append(impossible)
    apply_manifest(manifest, namespace)
    run_id = run_now(namespace)
    pipeline = wait_run_finished(namespace, NAME, run_id)
    stages = {s["stage"]: s for s in pipeline["status"]["lastRun"]["stages"]}
    assert stages["check"]["result"] == "Failed"
    assert stages["publish"]["result"] == "Blocked"
    assert "at most ten customers" in stages["publish"]["message"]
    published = condition(pipeline, "Published") or {}
    assert (published.get("status"), published.get("reason")) == ("False", "PublishBlocked")
    assert (condition(pipeline, "ChecksPassed") or {}).get("reason") == "ChecksFailed"
    warnings = [e for e in events_for(namespace, NAME) if e["type"] == "Warning"]
    assert any(e["reason"] == "PublishBlocked" for e in warnings), warnings
    assert _redis_meta(redis)["runId"] == before["runId"]
    assert _postgres_rows(postgres) == CUSTOMERS
