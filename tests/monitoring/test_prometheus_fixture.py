"""The Prometheus test server (tests/services.py) is real: it scrapes an exposition served on
loopback by prometheus_client (what the operator serves) and answers PromQL over it."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from tests.services import PrometheusServer, free_port, prometheus_server
from tests.tools import missing_tool


@pytest.fixture(scope="module")
def exposition() -> Iterator[tuple[int, Counter]]:
    registry = CollectorRegistry()
    gauge = Gauge("duckherd_fixture_rows", "Rows.", ["namespace", "pipeline"], registry=registry)
    gauge.labels(namespace="shop", pipeline="sales").set(42)
    counter = Counter("duckherd_fixture_runs", "Runs.", ["result"], registry=registry)
    counter.labels(result="succeeded").inc()
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    yield port, counter
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def prometheus(exposition: tuple[int, Counter]) -> Iterator[PrometheusServer]:
    if shutil.which("prometheus") is None:
        missing_tool("no prometheus binary (Debian package `prometheus`; hack/setup.sh)")
    port, _ = exposition
    scrape = {"job_name": "fixture", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
    with prometheus_server([scrape]) as server:
        yield server


def test_prometheus_scrapes_the_exposition_and_answers_queries(
    prometheus: PrometheusServer, exposition: tuple[int, Counter]
) -> None:
    _, counter = exposition
    prometheus.wait_for_scrapes("fixture", scrapes=2)
    (sample,) = prometheus.query('duckherd_fixture_rows{namespace="shop"}')
    assert sample["metric"]["pipeline"] == "sales"
    assert sample["value"][1] == "42"
    assert sample["metric"]["job"] == "fixture"
    counter.labels(result="succeeded").inc(4)

    def increased() -> bool:
        samples = prometheus.query("sum(increase(duckherd_fixture_runs_total[1h]))")
        return bool(samples) and float(samples[0]["value"][1]) > 0

    deadline = time.monotonic() + 60
    while not increased():
        assert time.monotonic() < deadline, "the increment never showed in Prometheus"
        time.sleep(0.5)


def test_a_bad_query_is_an_error_naming_the_cause(prometheus: PrometheusServer) -> None:
    with pytest.raises(RuntimeError, match="parse error"):
        prometheus.query("sum(")
