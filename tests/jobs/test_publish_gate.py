"""The quality gate in front of publish, read from `_duckherd.runs` of a real warehouse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis as redis_client

from duckherd.summary import StageSummary
from duckherd_jobs.runner import run_stage
from duckherd_jobs.warehouse import connect
from tests.jobs.test_publish_support import (
    CHECKS,
    REDIS_ENV,
    build_mart,
    context,
    customers_select,
    pipeline,
    record_check,
    redis_entry,
)
from tests.services import RedisServer

pytestmark = pytest.mark.services


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "w.duckdb"
    build_mart(path, customers_select(10, 1))
    return path


def publish(
    warehouse: Path, redis: RedisServer, prefix: str, *, checks: bool = True, run_id: str = "run-1"
) -> StageSummary:
    spec = pipeline([redis_entry(keyPrefix=prefix)], checks=CHECKS if checks else None)
    return run_stage("publish", context(warehouse, spec, {REDIS_ENV: redis.url()}, run_id=run_id))


def test_an_error_check_failure_blocks_publish_and_names_the_checks(
    warehouse: Path, redis: RedisServer, client: redis_client.Redis
) -> None:
    record_check(
        warehouse,
        "run-1",
        [("ids present", "error", False), ("revenue sane", "error", False), ("ok", "warn", True)],
    )

    summary = publish(warehouse, redis, "gate:error")

    assert not summary.ok
    assert summary.blocked
    assert summary.published == []
    assert "this run's check stage failed error-severity checks: ids present, revenue sane" in (
        summary.error or ""
    )
    assert client.exists("gate:error:meta", "gate:error:rows") == 0


def test_a_blocked_publish_is_recorded_as_blocked_in_the_run_log(
    warehouse: Path, redis: RedisServer
) -> None:
    record_check(warehouse, "run-1", [("ids present", "error", False)])

    publish(warehouse, redis, "gate:recorded")

    with connect(warehouse, read_only=True) as connection:
        rows = connection.execute(
            "SELECT ok, summary FROM _duckherd.runs WHERE stage = 'publish' AND run_id = 'run-1'"
        ).fetchall()
    assert [(ok, json.loads(summary)["blocked"]) for ok, summary in rows] == [(False, True)]


def test_warn_failures_do_not_block(
    warehouse: Path, redis: RedisServer, client: redis_client.Redis
) -> None:
    record_check(warehouse, "run-1", [("ids present", "error", True), ("fresh", "warn", False)])

    summary = publish(warehouse, redis, "gate:warn")

    assert summary.ok, summary.error
    assert not summary.blocked
    assert client.hlen("gate:warn:rows") == 10


def test_a_check_stage_that_crashed_blocks(warehouse: Path, redis: RedisServer) -> None:
    record_check(warehouse, "run-1", [], ok=False)

    summary = publish(warehouse, redis, "gate:crashed")

    assert summary.blocked
    assert "this run's check stage failed" in (summary.error or "")


def test_without_a_check_in_this_run_the_latest_check_run_decides(
    warehouse: Path, redis: RedisServer, client: redis_client.Redis
) -> None:
    record_check(
        warehouse, "older", [("ids present", "error", True)], finished_at="2026-01-01T01:00:00Z"
    )
    record_check(
        warehouse, "newer", [("ids present", "error", False)], finished_at="2026-01-01T02:00:00Z"
    )

    blocked = publish(warehouse, redis, "gate:latest", run_id="manual-publish")
    record_check(
        warehouse, "newest", [("ids present", "error", True)], finished_at="2026-01-01T03:00:00Z"
    )
    allowed = publish(warehouse, redis, "gate:latest", run_id="manual-publish-2")

    assert blocked.blocked
    assert "the latest check stage (run newer) failed error-severity checks: ids present" in (
        blocked.error or ""
    )
    assert allowed.ok, allowed.error
    assert client.hlen("gate:latest:rows") == 10


def test_this_runs_check_wins_over_a_later_one_of_another_run(
    warehouse: Path, redis: RedisServer
) -> None:
    record_check(
        warehouse, "run-1", [("ids present", "error", False)], finished_at="2026-01-01T01:00:00Z"
    )
    record_check(
        warehouse, "run-2", [("ids present", "error", True)], finished_at="2026-01-01T02:00:00Z"
    )

    assert publish(warehouse, redis, "gate:own", run_id="run-1").blocked


def test_checks_declared_but_never_run_block(warehouse: Path, redis: RedisServer) -> None:
    summary = publish(warehouse, redis, "gate:never")

    assert summary.blocked
    assert "no check stage has run yet" in (summary.error or "")


def test_a_pipeline_without_checks_publishes(
    warehouse: Path, redis: RedisServer, client: redis_client.Redis
) -> None:
    record_check(warehouse, "run-1", [("stale", "error", False)])  # not this pipeline's checks

    summary = publish(warehouse, redis, "gate:none", checks=False)

    assert summary.ok, summary.error
    assert client.hlen("gate:none:rows") == 10


def test_error_severity_dbt_test_failures_of_the_transform_block(
    warehouse: Path, redis: RedisServer, client: redis_client.Redis
) -> None:
    # The transform failed on a dbt test, so this run has no check stage; an older check
    # passed. The marts come from that transform: they are not published.
    record_check(warehouse, "older", [("ids present", "error", True)])
    record_check(
        warehouse,
        "run-1",
        [("dbt:unique_customers_id", "error", False), ("dbt:not_null_customers_id", "warn", True)],
        stage="transform",
    )

    blocked = publish(warehouse, redis, "gate:dbt", checks=False)

    assert blocked.blocked
    assert blocked.error == (
        "publish blocked: this run's transform failed error-severity dbt tests: "
        "dbt:unique_customers_id"
    )
    assert client.exists("gate:dbt:rows") == 0


def test_warn_severity_dbt_test_failures_do_not_block(
    warehouse: Path, redis: RedisServer, client: redis_client.Redis
) -> None:
    record_check(
        warehouse, "run-1", [("dbt:unique_customers_id", "warn", False)], stage="transform"
    )
    record_check(warehouse, "run-1", [("ids present", "error", True)])

    summary = publish(warehouse, redis, "gate:dbt-warn")

    assert summary.ok, summary.error
    assert client.hlen("gate:dbt-warn:rows") == 10
