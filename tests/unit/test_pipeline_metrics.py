"""Per-pipeline metrics (docs/metrics.md): made at scrape time from the pipelines the operator
holds, checked by promtool, and gone with the pipeline."""

from __future__ import annotations

import asyncio
import os
import socket
import tracemalloc
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from duckherd.api import API_VERSION, KIND, DataPipelineSpec, DataPipelineStatus, Stage
from duckherd.status import RunObservation, StageObservation, compute_status
from duckherd.summary import (
    CheckResult,
    ChecksSummary,
    KpiResult,
    LineageDelivery,
    PublishedTarget,
    StageResources,
    StageSummary,
    TableSummary,
    WarehouseUsage,
)
from duckherd_operator import metrics
from duckherd_operator.handlers.monitoring import forget_deleted_pipeline
from duckherd_operator.metrics_server import start_metrics_server
from duckherd_operator.pipeline_metrics import PipelineMetrics, RunHistory
from tests import tools
from tests.unit.manifests import spec

GOLDEN = Path(__file__).parent / "golden" / "pipeline-metrics.txt"
NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
SPEC = spec(
    metrics=[
        {
            "name": "customer_count",
            "help": "Customers in the analytics mart.",
            "table": "marts.customer_analytics",
            "expression": "count(*)",
        }
    ]
)
Index = dict[tuple[str, str], list[dict[str, Any]]]


def _summary(stage: Any, finished: str, **fields: Any) -> StageSummary:
    return StageSummary(
        stage=stage,
        ok=fields.pop("ok", True),
        finishedAt=finished,
        durationSeconds=fields.pop("duration", 12.5),
        resources=StageResources(peakMemoryBytes=150_000_000, cpuSeconds=4.75),
        warehouse=WarehouseUsage(
            sizeBytes=52_428_800, capacityBytes=1_073_741_824, availableBytes=900_000_000
        ),
        **fields,
    )


def _run(run_id: str, day: int, *, checks_fail: bool) -> RunObservation:
    at = f"2026-11-{day}T06:0{{}}:00Z".format
    results = [
        CheckResult(name="customer_id not null", severity="error", success=not checks_fail),
        CheckResult(name="row count", severity="warn", success=True),
    ]
    checks = ChecksSummary(passed=2 - checks_fail, failed=int(checks_fail), results=results)
    kpis = [KpiResult(name="customer_count", table="marts.customer_analytics", value=480)]
    stages = [
        _summary("ingest", at(1), tables={"raw.customers": TableSummary(rows=500, loaded=20)}),
        _summary(
            "transform",
            at(2),
            duration=75.0,
            tables={"marts.customer_analytics": TableSummary(rows=480)},
        ),
        _summary("check", at(3), ok=not checks_fail, duration=2.0, checks=checks, kpis=kpis),
    ]
    if not checks_fail:
        published = [PublishedTarget(table="marts.customer_analytics", target="redis", rows=480)]
        stages.append(_summary("publish", at(4), duration=0.4, published=published))
    observed = tuple(
        StageObservation(
            stage=s.stage,
            job=f"shop-{s.stage}-{run_id}",
            state="Succeeded" if s.ok else "Failed",
            start_time=at(0),
            completion_time=s.finishedAt,
            summary=s,
        )
        for s in stages
    )
    return RunObservation(run_id=run_id, trigger="Schedule", stages=observed)


def _status(previous: DataPipelineStatus, run: RunObservation) -> DataPipelineStatus:
    return compute_status(
        spec=DataPipelineSpec.model_validate(SPEC),
        generation=2,
        previous=previous,
        run=run,
        now=NOW,
        next_schedule_time="2026-11-27T05:00:00Z",
    )


def _body(name: str, status: DataPipelineStatus | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"namespace": "analytics", "name": name},
        "spec": SPEC,
    }
    if status is not None:
        body["status"] = status.model_dump(mode="json", exclude_none=True)
    return body


def _fleet(history: RunHistory) -> Index:
    """`shop` ran twice (a success, then failed checks that blocked publishing) as the
    operator recorded it; `fresh` was just created and has no status."""
    first = _status(DataPipelineStatus(), _run("r1", 25, checks_fail=False))
    history.record(("analytics", "shop"), DataPipelineStatus(), first)
    second = _status(first, _run("r2", 26, checks_fail=True))
    history.record(("analytics", "shop"), first, second)
    history.record(("analytics", "shop"), second, second)  # a repeated sync counts nothing
    return {
        ("analytics", "shop"): [_body("shop", second)],
        ("analytics", "fresh"): [_body("fresh", None)],
    }


def _exposition(index: Index, history: RunHistory) -> str:
    served = PipelineMetrics(history, now=lambda: NOW)
    served.attach(index)
    return b"".join(served.render()).decode()


def test_exposition_matches_golden() -> None:
    history = RunHistory()
    text = _exposition(_fleet(history), history)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert GOLDEN.read_text() == text, "drifted; UPDATE_GOLDEN=1 rewrites it after review"


def test_runs_and_durations_are_counted_once_per_transition() -> None:
    history = RunHistory()
    _fleet(history)
    # An error check that fails fails the check stage, so the run failed (publish Blocked).
    assert history.runs(("analytics", "shop")) == {"succeeded": 1, "failed": 1}
    durations = history.durations(("analytics", "shop"))
    buckets, total = durations["transform"]
    assert total == 150.0  # two transforms of 75 s
    assert dict(buckets)["60.0"] == 0 and dict(buckets)["300.0"] == 2
    assert dict(durations["publish"][0])["+Inf"] == 1  # the blocked run never published


def test_a_deleted_pipelines_series_disappear() -> None:
    history = metrics.HISTORY  # what the operator records into and the handler forgets from
    index = _fleet(history)
    assert 'pipeline="shop"' in _exposition(index, history)
    del index[("analytics", "shop")]  # the watch saw the delete: the cache has it no more
    handler: Any = forget_deleted_pipeline  # the Kopf handler as Kopf calls it
    asyncio.run(handler(type="MODIFIED", namespace="analytics", name="shop"))
    assert history.runs(("analytics", "shop")) != {}
    asyncio.run(handler(type="DELETED", namespace="analytics", name="shop"))
    assert history.runs(("analytics", "shop")) == {}
    assert history.durations(("analytics", "shop")) == {}
    text = _exposition(index, history)
    assert 'pipeline="shop"' not in text and 'pipeline="fresh"' in text


def test_a_missed_delete_is_dropped_at_the_next_scrape() -> None:
    history = RunHistory()
    index = _fleet(history)
    del index[("analytics", "shop")]  # deleted while no DELETED event reached the handler
    assert 'pipeline="shop"' not in _exposition(index, history)
    assert history.runs(("analytics", "shop")) == {}


def test_a_status_this_version_cannot_read_still_lists_the_pipeline() -> None:
    history = RunHistory()
    body = _body("odd", None)
    body["status"] = {"lastRun": {"id": 7}, "somethingNew": {"a": 1}}
    text = _exposition({("analytics", "odd"): [body]}, history)
    assert 'duckherd_pipeline_info{namespace="analytics",pipeline="odd"} 1.0' in text


def test_what_is_kept_per_pipeline_stays_small() -> None:
    """The accumulated part is a few integers per stage: 1,000 pipelines with every stage
    observed keep well under 2 MiB (the scrape-time part is freed after each scrape)."""
    first = _status(DataPipelineStatus(), _run("r1", 25, checks_fail=False))
    tracemalloc.start()
    try:
        history = RunHistory()
        baseline = tracemalloc.take_snapshot()
        for n in range(1000):
            history.record(("analytics", f"p{n}"), DataPipelineStatus(), first)
        grown = tracemalloc.take_snapshot().compare_to(baseline, "filename")
    finally:
        tracemalloc.stop()
    assert sum(stat.size_diff for stat in grown) < 2 * 1024 * 1024


def _lineage_run(run_id: str, **deliveries: LineageDelivery) -> RunObservation:
    observed = tuple(
        StageObservation(
            stage=cast(Stage, stage),
            job=f"shop-{stage}-{run_id}",
            state="Succeeded",
            summary=_summary(stage, f"2026-11-25T06:0{n}:00Z", lineageEvents=delivery),
        )
        for n, (stage, delivery) in enumerate(deliveries.items(), start=1)
    )
    return RunObservation(run_id=run_id, trigger="Manual", stages=observed)


def _samples(text: str, name: str) -> dict[tuple[str, str], float]:
    families = {family.name: family for family in text_string_to_metric_families(text)}
    if name not in families:
        return {}
    return {
        (s.labels["pipeline"], s.labels["stage"]): s.value
        for s in families[name].samples
        if s.name.endswith("_total")
    }


def test_lineage_deliveries_and_failures_are_counted_once_per_stage_run() -> None:
    """The stages report their OpenLineage delivery in their summaries; the operator counts
    events per stage and the stage runs whose delivery failed, once per stage run."""
    history = RunHistory()
    failed = LineageDelivery(sent=1, error="emitting COMPLETE failed: no answer within 5.0s")
    first = _status(
        DataPipelineStatus(),
        _lineage_run("r1", ingest=LineageDelivery(sent=4), transform=failed),
    )
    history.record(("analytics", "shop"), DataPipelineStatus(), first)
    history.record(("analytics", "shop"), first, first)  # a repeated sync counts nothing
    second = _status(first, _lineage_run("r2", ingest=LineageDelivery(sent=4)))
    history.record(("analytics", "shop"), first, second)
    assert first.lastRun is not None
    transform = next(s for s in first.lastRun.stages if s.stage == "transform")
    assert (transform.lineageEvents, transform.lineageError) == (1, failed.error)

    # `quiet` emits by its spec but has not run: its counters start at 0, every stage.
    quiet = _body("quiet", None)
    quiet["spec"] = {**SPEC, "lineage": {"url": "http://marquez:5000"}}
    index = {("analytics", "shop"): [_body("shop", second)], ("analytics", "quiet"): [quiet]}
    text = _exposition(index, history)

    events = _samples(text, "duckherd_lineage_events")
    failures = _samples(text, "duckherd_lineage_failures")
    assert events[("shop", "ingest")] == 8 and events[("shop", "transform")] == 1
    assert failures[("shop", "transform")] == 1 and failures[("shop", "ingest")] == 0
    assert ("shop", "check") not in events  # the chart sets no default receiver here
    assert {stage for (name, stage) in failures if name == "quiet"} == {
        "ingest",
        "transform",
        "check",
        "publish",
    }
    assert all(value == 0 for (name, _), value in failures.items() if name == "quiet")
    assert tools.promtool_lint_metrics(text) == (0, "")


def test_lineage_counters_follow_the_charts_default_receiver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    history = RunHistory()
    index = {("analytics", "fresh"): [_body("fresh", None)]}
    assert _samples(_exposition(index, history), "duckherd_lineage_failures") == {}
    monkeypatch.setenv("DUCKHERD_LINEAGE_URL", "http://marquez:5000")
    assert len(_samples(_exposition(index, history), "duckherd_lineage_failures")) == 4
    off = _body("off", None)
    off["spec"] = {**SPEC, "lineage": {"enabled": False}}
    assert (
        _samples(_exposition({("analytics", "off"): [off]}, history), "duckherd_lineage_failures")
        == {}
    )


def test_reconcile_passes_are_counted_by_result() -> None:
    def total(result: str) -> float:
        labels = {"controller": "datapipeline", "result": result}
        return REGISTRY.get_sample_value("controller_runtime_reconcile_total", labels) or 0.0

    before = (total("success"), total("error"))
    with metrics.reconcile_pass():
        pass
    with pytest.raises(RuntimeError), metrics.reconcile_pass():
        raise RuntimeError("the API server is away")
    assert (total("success") - before[0], total("error") - before[1]) == (1.0, 1.0)
    count = REGISTRY.get_sample_value(
        "controller_runtime_reconcile_time_seconds_count", {"controller": "datapipeline"}
    )
    assert count is not None and count >= 2


# --------------------------------------------------------------------------- promtool


@pytest.fixture
def served_metrics() -> Iterator[str]:
    """The operator's /metrics server as main.py starts it: the default registry (controller
    and process metrics) and the per-pipeline families, on a free loopback port."""
    history = RunHistory()
    pipelines = PipelineMetrics(history, now=lambda: NOW)
    pipelines.attach(_fleet(history))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = start_metrics_server(port, pipelines, address="127.0.0.1")
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        server.shutdown()
        server.server_close()


def test_promtool_finds_nothing_to_lint_in_the_served_metrics(served_metrics: str) -> None:
    metrics.count_request("GET", "https://10.96.0.1:443", 200)
    with metrics.reconcile_pass():
        pass
    with urllib.request.urlopen(served_metrics, timeout=30) as answer:
        assert answer.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = answer.read().decode()
    # prometheus_client's parser reads it back: one family per name, the histogram whole.
    families = {family.name: family for family in text_string_to_metric_families(text)}
    durations = families["duckherd_stage_duration_seconds"]
    assert durations.type == "histogram" and len(durations.samples) == 4 * 8
    assert families["duckherd_pipeline_info"].samples[0].labels["pipeline"] == "fresh"
    for name in ("duckherd_pipeline_runs_total", "controller_runtime_reconcile_total"):
        assert f"# TYPE {name} counter" in text
    assert 'rest_client_requests_total{code="200",host="10.96.0.1:443",method="GET"}' in text
    assert tools.promtool_lint_metrics(text) == (0, "")


def test_label_values_are_escaped_as_the_text_format_requires() -> None:
    awkward = 'Customers "active" in C:\\shop\nper day'
    body = _body("odd", None)
    body["spec"] = spec(metrics=[{**SPEC["metrics"][0], "help": awkward}])
    text = _exposition({("analytics", "odd"): [body]}, RunHistory())
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert families["duckherd_kpi_info"].samples[0].labels["help"] == awkward
    assert tools.promtool_lint_metrics(text) == (0, "")
