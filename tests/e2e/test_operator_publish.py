"""Serving on a real cluster: the example publishes its mart to Redis and PostgreSQL, a failed
run and a failed error-severity check both leave the published version in place (the check
holds publishing back: Published=False, Warning Event).

Redis and PostgreSQL are the real servers of the test session, listening on this machine;
stage pods reach them at the host address, with credentials from Secrets. A real Prometheus
(tests/services.py) scrapes the operator from before the first run, discovering it as the
chart's ServiceMonitor describes, and evaluates the chart's alert rules: after the three runs
(a success, a failed run, a blocked publish) every panel of the chart's Grafana dashboard
returns data and the alerts for those states fire (docs/monitoring.md).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg2
import pytest
import redis as redis_client
import yaml

from duckherd_jobs.demo_source import DemoSource
from tests.chart import need_helm, one, render
from tests.e2e.conftest import Cluster, kubectl_json, wait_until
from tests.e2e.operator_support import (
    REACTION_TIMEOUT,
    Operator,
    apply_manifest,
    apply_secret,
    condition,
    events_for,
    installed_operator,
    load_example,
    run_now,
    wait_run_finished,
)
from tests.monitoring.grafana import (
    Window,
    load_dashboard,
    run_dashboard,
    variable,
    variable_values,
)
from tests.monitoring.scrape import scrape_config
from tests.services import PostgresServer, PrometheusServer, RedisServer, prometheus_server
from tests.tools import missing_tool

pytestmark = pytest.mark.e2e

NAME = "customer-analytics"
CUSTOMERS = 2_000
SCRAPE_SECONDS = 2


@pytest.fixture(scope="module")
def operator(cluster: Cluster) -> Iterator[Operator]:
    with installed_operator(cluster, release="duckherd-publish") as installed:
        yield installed


@dataclass(frozen=True)
class Scraping:
    server: PrometheusServer
    started: float  # when it started scraping: the dashboard's time range starts here
    job: str


@pytest.fixture(scope="module")
def prometheus(operator: Operator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraping]:
    """Prometheus scraping the operator as the chart's ServiceMonitor says, evaluating the
    chart's rules (both rendered for this release by `helm template`)."""
    if shutil.which("prometheus") is None:
        missing_tool("no prometheus binary (Debian package `prometheus`; hack/setup.sh)")
    docs = render(
        need_helm(),
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.prometheusRule.enabled=true",
        release=operator.release,
        namespace=operator.namespace,
    )
    rules = tmp_path_factory.mktemp("prometheus") / "duckherd-rules.yaml"
    rules.write_text(yaml.safe_dump(one(docs, "PrometheusRule")["spec"]))
    scrape = scrape_config(one(docs, "ServiceMonitor"), kubectl_json, f"{SCRAPE_SECONDS}s")
    job = f"{operator.fullname}-metrics"
    with prometheus_server([scrape], [rules], scrape_interval=f"{SCRAPE_SECONDS}s") as server:
        started = time.time()
        server.wait_for_scrapes(job, scrapes=2, timeout=REACTION_TIMEOUT)
        yield Scraping(server, started, job)


@pytest.fixture(scope="module")
def example(
    cluster: Cluster,
    pipeline_namespace: str,
    postgres: PostgresServer,
    redis: RedisServer,
    prometheus: Scraping,
    demo_api: DemoSource,
) -> dict[str, Any]:
    host = cluster.need_host_ip()
    apply_secret(pipeline_namespace, "duckherd-cache", {"url": redis.url(host=host, db=3)})
    apply_secret(pipeline_namespace, "duckherd-appdb", {"dsn": postgres.dsn(host=host)})
    manifest = load_example(demo_api.url, publish=True)
    apply_manifest(manifest, pipeline_namespace)
    return manifest


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
    example: dict[str, Any], pipeline_namespace: str, postgres: PostgresServer, redis: RedisServer
) -> None:
    run_id = run_now(pipeline_namespace, NAME)
    pipeline = wait_run_finished(pipeline_namespace, NAME, run_id)
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


def firing(scraping: Scraping, namespace: str) -> set[str]:
    """The alerts firing for the pipelines of `namespace` and for the operator."""
    return {
        alert["labels"]["alertname"]
        for alert in scraping.server.api("alerts")["alerts"]
        if alert["state"] == "firing"
        and alert["labels"].get("namespace", namespace) == namespace
        and alert["labels"].get("job", scraping.job) == scraping.job
    }


def wait_firing(scraping: Scraping, namespace: str, expected: set[str]) -> set[str]:
    """Waits until `expected` are among the alerts firing (`firing`); returns all that fire."""
    alerts: set[str] = wait_until(
        f"{', '.join(sorted(expected))} to fire",
        lambda: (found := firing(scraping, namespace)) >= expected and found,
        timeout=REACTION_TIMEOUT,
    )
    return alerts


def test_a_failed_run_keeps_the_published_version(
    cluster: Cluster,
    example: dict[str, Any],
    pipeline_namespace: str,
    redis: RedisServer,
    prometheus: Scraping,
) -> None:
    before = _redis_meta(redis)
    manifest = json.loads(json.dumps(example))
    source = manifest["spec"]["sources"][0]["http"]
    source.update(url=f"http://{cluster.need_host_ip()}:9/customers", maxRetries=0)
    apply_manifest(manifest, pipeline_namespace)
    pipeline = wait_run_finished(pipeline_namespace, NAME, run_now(pipeline_namespace, NAME))
    assert pipeline["status"]["lastRun"]["result"] == "Failed"
    assert (condition(pipeline, "DataReady") or {}).get("reason") == "RunFailed"
    assert _redis_meta(redis)["runId"] == before["runId"]
    alerts = wait_firing(prometheus, pipeline_namespace, {"DuckherdPipelineRunFailed"})
    print(f"[alerts] after a failed run: {sorted(alerts)}")


def test_failed_checks_block_publishing_and_keep_the_published_version(
    example: dict[str, Any], pipeline_namespace: str, postgres: PostgresServer, redis: RedisServer
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
    apply_manifest(manifest, pipeline_namespace)
    run_id = run_now(pipeline_namespace, NAME)
    pipeline = wait_run_finished(pipeline_namespace, NAME, run_id)
    stages = {s["stage"]: s for s in pipeline["status"]["lastRun"]["stages"]}
    assert stages["check"]["result"] == "Failed"
    assert stages["publish"]["result"] == "Blocked"
    assert "at most ten customers" in stages["publish"]["message"]
    published = condition(pipeline, "Published") or {}
    assert (published.get("status"), published.get("reason")) == ("False", "PublishBlocked")
    assert (condition(pipeline, "ChecksPassed") or {}).get("reason") == "ChecksFailed"
    warnings = [e for e in events_for(pipeline_namespace, NAME) if e["type"] == "Warning"]
    assert any(e["reason"] == "PublishBlocked" for e in warnings), warnings
    assert _redis_meta(redis)["runId"] == before["runId"]
    assert _postgres_rows(postgres) == CUSTOMERS


# DuckherdWarehouseVolumeFilling is not among them: the test cluster's volumes are host paths,
# so it reports this machine's disk, whatever it holds.
QUIET_ALERTS = {
    "DuckherdPipelineRunFailed",
    "DuckherdPipelineDataStale",
    "DuckherdPipelineDataAging",
    "DuckherdPipelineMissedRun",
    "DuckherdOperatorDown",
    "DuckherdOperatorNotReconciling",
    "DuckherdOperatorReconcileErrors",
}


@pytest.fixture(scope="module")
def settled(prometheus: Scraping, pipeline_namespace: str) -> Window:
    """The dashboard's time range: from Prometheus' start to once it has scraped the blocked
    publish a few times (so the last points of a graph see the last run)."""
    blocked = (
        f'duckherd_pipeline_condition{{namespace="{pipeline_namespace}", pipeline="{NAME}", '
        'type="Published", reason="PublishBlocked"}'
    )
    server = prometheus.server
    wait_until(
        "Prometheus to scrape the blocked publish a few times",
        lambda: server.query(f"count_over_time({blocked}[1h]) >= 6"),
        timeout=REACTION_TIMEOUT,
    )
    names = server.api("label/__name__/values")
    print("[metrics] scraped:", " ".join(n for n in names if n.startswith("duckherd_")))
    return Window(prometheus.started, time.time(), SCRAPE_SECONDS)


def test_every_dashboard_panel_returns_data(
    prometheus: Scraping, pipeline_namespace: str, settled: Window
) -> None:
    """After a success, a failed run and a blocked publish, every panel of the chart's
    dashboard returns data for this pipeline, queried as Grafana would."""
    server = prometheus.server
    dashboard = load_dashboard()
    values = {"namespace": pipeline_namespace, "pipeline": NAME}
    for name, wanted in values.items():
        options = variable_values(server, variable(dashboard, name)["query"], values, settled)
        print(f"[dashboard] variable {name}: {options}")
        assert wanted in options
    results = run_dashboard(server, dashboard, values, settled)
    for result in results:
        print(f"[dashboard] {result.line()}")
    empty = [f"{r.line()}\n    {r.expr}" for r in results if not r.has_data]
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_the_run_panels_count_every_run(
    prometheus: Scraping, pipeline_namespace: str, settled: Window
) -> None:
    server = prometheus.server
    mine = f'namespace="{pipeline_namespace}", pipeline="{NAME}"'
    window = f"{settled.end - settled.start:.0f}s"
    counted = server.query(
        f"increase(duckherd_pipeline_runs_total{{{mine}}}[{window}]) > 0", at=settled.end
    )
    # Checks that fail make the run Failed (its publish Blocked): two failed runs, one success.
    assert {s["metric"]["result"] for s in counted} == {"succeeded", "failed"}
    succeeded = f'increase(duckherd_pipeline_runs_total{{{mine}, result="succeeded"}}[{window}])'
    every = f"increase(duckherd_pipeline_runs_total{{{mine}}}[{window}])"
    (rate,) = server.query(f"sum({succeeded}) / sum({every})", at=settled.end)
    assert 0 < float(rate["value"][1]) < 1


def test_the_alerts_of_the_pipeline_s_state_fire_and_no_other(
    prometheus: Scraping, pipeline_namespace: str, settled: Window
) -> None:
    expected = {"DuckherdPipelineChecksFailed", "DuckherdPipelinePublishBlocked"}
    alerts = wait_firing(prometheus, pipeline_namespace, expected)
    print(f"[alerts] firing: {sorted(alerts)}")
    assert not alerts & QUIET_ALERTS, alerts
