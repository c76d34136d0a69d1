"""The example pipeline on a real cluster, driven by the operator the chart installed.

One pipeline lives through the module, in order: applied → run by annotation → run by
`kubectl create job --from` with the operator down mid-chain → spec edited → a failing source
→ suspended → deleted. The demo customers API runs in this process, on the address at which
pods reach this machine, so stage pods call it as an external API.

Wall-clock measurements are printed (`[e2e timing]`), never asserted.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from duckherd_jobs.demo_source import DemoSource
from tests import pipelines, tools
from tests.e2e.conftest import Cluster, kubectl, kubectl_json, wait_until
from tests.e2e.operator_support import (
    REACTION_TIMEOUT,
    RUN_TIMEOUT,
    Operator,
    Stopwatch,
    apply_manifest,
    apply_secret,
    condition,
    events_for,
    exists,
    get_pipeline,
    job_finished,
    jobs_of_run,
    load_example,
    patch_spec,
    query_warehouse,
    run_now,
    serving,
    stage_jobs,
    wait_run_finished,
)
from tests.services import PostgresServer

pytestmark = pytest.mark.e2e

NAME = "customer-analytics"
CUSTOMERS = 10_000
STAGES = ["ingest", "transform", "check"]
CLAIM = f"{NAME}-warehouse"
SPEC_FILE = "pipeline.yaml"
# dbt tests of the example project (dbt/models/*.yml): unique and not_null on the four models
# (two staging, two marts), and not_null on the two source tables.
DBT_TESTS = 10


@pytest.fixture(scope="module")
def stopwatch() -> Iterator[Stopwatch]:
    watch = Stopwatch()
    yield watch
    print("[e2e timings] " + json.dumps({k: round(v, 2) for k, v in watch.results.items()}))


@pytest.fixture(scope="module")
def example(
    operator: Operator, demo_api: DemoSource, pipeline_namespace: str, stopwatch: Stopwatch
) -> dict[str, Any]:
    """The example applied with kubectl; the time until its children exist is measured."""
    manifest = load_example(demo_api.url)
    start = stopwatch.now()
    apply_manifest(manifest, pipeline_namespace)
    wanted = [("configmap", f"{NAME}-spec"), ("pvc", CLAIM)] + [
        ("cronjob", f"{NAME}-{stage}") for stage in STAGES
    ]
    wait_until(
        "the example's children",
        lambda: all(exists(kind, name, pipeline_namespace) for kind, name in wanted),
        timeout=120,
        interval=0.2,
    )
    stopwatch.record("apply -> children created (s)", stopwatch.now() - start)
    return manifest


def follow_run(namespace: str, run_id: str, stopwatch: Stopwatch) -> dict[str, Any]:
    """Polls Jobs and status until the run ends; measures Job completion → status updated."""
    completed: dict[str, float] = {}
    reported: dict[str, float] = {}
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        for job in stage_jobs(namespace, NAME):
            labels = job["metadata"].get("labels", {})
            if labels.get("duckherd.io/run-id") == run_id and job_finished(job):
                completed.setdefault(labels["duckherd.io/stage"], time.monotonic())
        pipeline = get_pipeline(namespace, NAME)
        last = pipeline.get("status", {}).get("lastRun") or {}
        if last.get("id") == run_id:
            for stage in last.get("stages", []):
                if stage["result"] in ("Succeeded", "Failed"):
                    reported.setdefault(stage["stage"], time.monotonic())
            if last.get("result") not in (None, "Running"):
                for stage, seen in completed.items():
                    if stage in reported:
                        stopwatch.record(
                            f"{stage} Job complete -> status updated (s)",
                            max(0.0, reported[stage] - seen),
                        )
                return pipeline
        time.sleep(0.3)
    raise TimeoutError(f"run {run_id} did not finish within {RUN_TIMEOUT:.0f}s")


def _stage_results(pipeline: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["stage"], s["result"]) for s in pipeline["status"]["lastRun"]["stages"]]


def _table_rows(pipeline: dict[str, Any]) -> dict[str, int]:
    return {t["name"]: t["rows"] for t in pipeline["status"].get("tables", [])}


def test_example_children_follow_the_spec(example: dict[str, Any], pipeline_namespace: str) -> None:
    ns = pipeline_namespace
    owner = get_pipeline(ns, NAME)
    ingest = kubectl_json("get", "cronjob", f"{NAME}-ingest", "-n", ns)
    assert ingest["spec"]["schedule"] == "0 6 * * *"
    assert ingest["spec"]["timeZone"] == "UTC"
    assert ingest["spec"]["suspend"] is False
    assert ingest["spec"]["concurrencyPolicy"] == "Forbid"
    assert ingest["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
    pod = ingest["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod
    for stage in ("transform", "check"):
        chained = kubectl_json("get", "cronjob", f"{NAME}-{stage}", "-n", ns)
        assert chained["spec"]["suspend"] is True, f"{stage} only runs when chained"
    pvc = kubectl_json("get", "pvc", CLAIM, "-n", ns)
    assert "ownerReferences" not in pvc["metadata"], "the warehouse is retained by default"
    assert not exists("cronjob", f"{NAME}-publish", ns), "the example publishes nothing"
    status = wait_until(
        "status.observedGeneration",
        lambda: get_pipeline(ns, NAME).get("status", {}).get("observedGeneration") == 1,
        timeout=REACTION_TIMEOUT,
    )
    assert status


def test_run_by_annotation_chains_stages_and_reports_status(
    example: dict[str, Any], demo_api: DemoSource, pipeline_namespace: str, stopwatch: Stopwatch
) -> None:
    ns = pipeline_namespace
    start = stopwatch.now()
    run_id = run_now(ns, NAME)
    pipeline = follow_run(ns, run_id, stopwatch)
    ready = kubectl(
        "wait", "--for=condition=DataReady", f"datapipeline/{NAME}", "-n", ns, "--timeout=120s"
    )
    stopwatch.record("example run end to end: annotate -> DataReady (s)", stopwatch.now() - start)
    assert "condition met" in ready

    last = pipeline["status"]["lastRun"]
    assert last["result"] == "Succeeded", last
    assert last["trigger"] == "Manual"
    assert _stage_results(pipeline) == [(s, "Succeeded") for s in STAGES]
    # In order: each stage's Job was created only after the previous one completed.
    jobs = {
        j["metadata"]["labels"]["duckherd.io/stage"]: j
        for j in stage_jobs(ns, NAME)
        if j["metadata"]["labels"].get("duckherd.io/run-id") == run_id
    }
    assert sorted(jobs) == sorted(STAGES)
    for before, after in itertools.pairwise(STAGES):
        assert (
            jobs[after]["metadata"]["creationTimestamp"] >= jobs[before]["status"]["completionTime"]
        )

    rows = _table_rows(pipeline)
    assert rows["raw.customers"] == CUSTOMERS
    assert rows["marts.customer_analytics"] > 0
    assert rows["raw.orders"] == rows["marts.orders"] == len(demo_api.orders) > 0
    # ROWS is the final tables' rows (the marts), not raw and marts added together.
    final = rows["marts.customer_analytics"] + rows["marts.orders"]
    assert pipeline["status"]["totalRows"] == final
    assert pipeline["status"]["freshness"]["state"] == "Fresh"
    # The example's checks and the dbt tests its transform ran (they count in one verdict).
    assert pipeline["status"]["quality"]["passed"] == 8 + DBT_TESTS
    assert pipeline["status"]["quality"]["failed"] == 0
    # The example's KPIs, computed by the check stage of this run (docs/kpis.md).
    kpis = {k["name"]: k for k in pipeline["status"]["kpis"]}
    assert sorted(kpis) == ["average_monthly_ltv", "customer_count", "total_monthly_ltv"]
    assert {(k["runId"], k["table"]) for k in kpis.values()} == {
        (run_id, "marts.customer_analytics")
    }
    assert all(k["computedAt"] and "message" not in k for k in kpis.values()), kpis
    assert kpis["customer_count"]["value"] == rows["marts.customer_analytics"]
    assert 0 < kpis["average_monthly_ltv"]["value"] < kpis["total_monthly_ltv"]["value"]
    assert pipeline["status"]["observedGeneration"] == pipeline["metadata"]["generation"]
    assert condition(pipeline, "Ready")["status"] == "True"  # type: ignore[index]
    assert condition(pipeline, "DataReady")["status"] == "True"  # type: ignore[index]

    table = kubectl("get", "datapipelines", "-n", ns)
    header, row = table.strip().splitlines()
    assert header.split()[:6] == ["NAME", "SCHEDULE", "READY", "DATA", "LAST", "RUN"]
    assert row.startswith(NAME)
    for shown in ("True", "Succeeded", str(pipeline["status"]["totalRows"]), "Fresh"):
        assert shown in row.split(), (shown, row)
    failures = [e for e in events_for(ns, NAME) if e["reason"] in ("StageFailed", "RunFailed")]
    assert not failures, failures


def test_a_successful_run_leaves_normal_events(
    example: dict[str, Any], pipeline_namespace: str
) -> None:
    """Runs after the annotation run above succeeded."""
    normal = {e["reason"] for e in events_for(pipeline_namespace, NAME) if e["type"] == "Normal"}
    assert {"StageSucceeded", "RunSucceeded"} <= normal, normal


def _samples(exposition: str, metric: str, /, **labels: str) -> list[float]:
    """Values of the samples of `metric` whose labels include `labels` (prometheus_client's
    parser reads the exposition)."""
    return [
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == metric and labels.items() <= sample.labels.items()
    ]


def test_the_run_shows_in_status_and_on_the_operators_metrics(
    example: dict[str, Any], operator: Operator, pipeline_namespace: str
) -> None:
    """After the first run: what each stage used and the warehouse are in status, and the
    operator's /metrics carries the pipeline's series (docs/metrics.md), lint-free."""
    ns = pipeline_namespace
    status = get_pipeline(ns, NAME)["status"]
    for stage in status["lastRun"]["stages"]:
        assert stage["peakMemoryBytes"] > 20 * 2**20, stage  # Python and DuckDB at least
        assert stage["cpuSeconds"] > 0, stage
    warehouse = status["warehouse"]
    assert warehouse["sizeBytes"] > 0 and warehouse["availableBytes"] > 0
    assert warehouse["availableBytes"] <= warehouse["capacityBytes"]

    mine = {"namespace": ns, "pipeline": NAME}

    def scraped() -> str | None:
        text = operator.metrics()
        counted = "duckherd_pipeline_runs_total" in text
        return text if counted and _samples(text, "duckherd_pipeline_runs_total", **mine) else None

    text: str = wait_until("the run counted on /metrics", scraped, timeout=REACTION_TIMEOUT)
    print("[e2e metrics] " + "\n".join(line for line in text.splitlines() if NAME in line))
    assert _samples(text, "duckherd_pipeline_runs_total", **mine, result="succeeded") == [1.0]
    ready = {"type": "DataReady", "status": "True", "reason": "RunSucceeded"}
    assert _samples(text, "duckherd_pipeline_condition", **mine, **ready) == [1.0]
    table = {"table": "raw.customers"}
    assert _samples(text, "duckherd_table_rows", **mine, **table) == [float(CUSTOMERS)]
    for stage in status["lastRun"]["stages"]:
        at = {**mine, "stage": stage["stage"]}
        assert _samples(text, "duckherd_stage_duration_seconds_count", **at) == [1.0]
        peak = _samples(text, "duckherd_stage_last_peak_memory_bytes", **at)
        assert peak == [float(stage["peakMemoryBytes"])]
    size = _samples(text, "duckherd_warehouse_size_bytes", **mine)
    assert size == [float(warehouse["sizeBytes"])]
    assert _samples(text, "duckherd_pipeline_last_load_timestamp_seconds", **mine)
    for kpi in example["spec"].get("metrics", []):
        assert _samples(text, "duckherd_kpi", **mine, name=kpi["name"]), kpi
    success = {"controller": "datapipeline", "result": "success"}
    assert sum(_samples(text, "controller_runtime_reconcile_total", **success)) > 0
    assert sum(_samples(text, "rest_client_requests_total", code="200")) > 0
    assert tools.promtool_lint_metrics(text) == (0, "")


def test_manual_job_chains_even_with_the_operator_down_mid_chain(
    example: dict[str, Any], operator: Operator, pipeline_namespace: str, stopwatch: Stopwatch
) -> None:
    """`kubectl create job --from` starts a run; the operator is away while ingest finishes
    (nothing can chain then), comes back, and its replacement Pod is deleted again while the
    transform runs: the chain still completes, one Job per stage."""
    ns = pipeline_namespace
    run_id = f"manual-{uuid.uuid4().hex[:6]}"
    kubectl("create", "job", f"--from=cronjob/{NAME}-ingest", run_id, "-n", ns)
    operator.scale(0)
    try:
        wait_until(
            f"ingest Job {run_id} to finish while the operator is down",
            lambda: job_finished(kubectl_json("get", "job", run_id, "-n", ns)),
            timeout=RUN_TIMEOUT,
            interval=2,
        )
        assert "transform" not in jobs_of_run(ns, NAME, run_id)
    finally:
        operator.scale(1)
    doomed = operator.ready_pod()
    wait_until(
        "the transform Job of the manual run",
        lambda: jobs_of_run(ns, NAME, run_id).get("transform"),
        timeout=RUN_TIMEOUT,
        interval=1,
    )
    kubectl("delete", "pod", doomed, "-n", operator.namespace, "--wait=false")

    pipeline = wait_run_finished(ns, NAME, run_id)
    assert pipeline["status"]["lastRun"]["result"] == "Succeeded", pipeline["status"]["lastRun"]
    assert pipeline["status"]["lastRun"]["trigger"] == "Manual"
    assert _stage_results(pipeline) == [(s, "Succeeded") for s in STAGES]
    assert {stage: len(names) for stage, names in jobs_of_run(ns, NAME, run_id).items()} == {
        stage: 1 for stage in STAGES
    }
    assert operator.ready_pod() != doomed
    # The merge is idempotent: the run re-delivers no duplicate customers.
    assert _table_rows(pipeline)["raw.customers"] == CUSTOMERS
    stopwatch.record("operator RSS after two runs (MiB)", operator.rss_bytes() / 2**20)


def test_spec_edit_updates_children_and_observed_generation(
    example: dict[str, Any], pipeline_namespace: str
) -> None:
    ns = pipeline_namespace
    patch_spec(ns, NAME, {"schedule": "15 5 * * *", "transform": {"dbt": {"threads": 3}}})
    generation = get_pipeline(ns, NAME)["metadata"]["generation"]
    wait_until(
        "the ingest CronJob's new schedule",
        lambda: (
            kubectl_json("get", "cronjob", f"{NAME}-ingest", "-n", ns)["spec"]["schedule"]
            == "15 5 * * *"
        ),
        timeout=REACTION_TIMEOUT,
    )

    def spec_file() -> str:
        return str(kubectl_json("get", "configmap", f"{NAME}-spec", "-n", ns)["data"][SPEC_FILE])

    try:
        wait_until(
            "the spec ConfigMap's new spec",
            lambda: "threads: 3" in spec_file(),
            timeout=REACTION_TIMEOUT,
        )
    except TimeoutError as error:
        raise AssertionError(f"{error}; the ConfigMap holds:\n{spec_file()}") from None
    wait_until(
        f"status.observedGeneration {generation}",
        lambda: get_pipeline(ns, NAME)["status"].get("observedGeneration") == generation,
        timeout=REACTION_TIMEOUT,
    )


class _HalfBrokenApi(BaseHTTPRequestHandler):
    """Page 1 serves changed customers, every later page fails: a run that must load nothing."""

    first_page = b""

    def do_GET(self) -> None:
        page = int(parse_qs(urlsplit(self.path).query).get("page", ["1"])[0])
        if page != 1:
            self.send_error(HTTPStatus.INTERNAL_SERVER_ERROR, "upstream broke mid-way")
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.first_page)))
        self.end_headers()
        self.wfile.write(self.first_page)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def half_broken_api(demo_api: DemoSource, cluster: Cluster) -> Iterator[str]:
    body, total = demo_api.catalog.page(1, 1000, None)
    page = json.loads(body)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for record in page["data"]:
        record["name"] = "CHANGED BY A FAILED RUN"
        record["updated_at"] = now
    page["total"] = total
    handler = type("Handler", (_HalfBrokenApi,), {"first_page": json.dumps(page).encode()})
    with serving(handler, cluster.need_host_ip()) as url:
        yield f"{url}/customers"


WAREHOUSE_PROBE = (
    "select (select count(*) from raw.customers), "
    "(select count(*) from raw.customers where name = 'CHANGED BY A FAILED RUN'), "
    "(select count(*) from _duckherd.state)"
)


def test_failing_source_reports_and_leaves_the_warehouse_unchanged(
    example: dict[str, Any],
    operator: Operator,
    pipeline_namespace: str,
    half_broken_api: str,
) -> None:
    ns = pipeline_namespace
    before = query_warehouse(ns, CLAIM, operator.image, WAREHOUSE_PROBE)
    assert before[0][:2] == [CUSTOMERS, 0]
    source = example["spec"]["sources"][0]
    broken = {**source, "http": {**source["http"], "url": half_broken_api, "maxRetries": 0}}
    patch_spec(ns, NAME, {"sources": [broken]})
    run_id = run_now(ns, NAME)
    pipeline = wait_run_finished(ns, NAME, run_id)

    assert pipeline["status"]["lastRun"]["result"] == "Failed"
    assert _stage_results(pipeline) == [
        ("ingest", "Failed"),
        ("transform", "Pending"),
        ("check", "Pending"),
    ]
    assert list(jobs_of_run(ns, NAME, run_id)) == ["ingest"], "nothing chained after a failure"
    data = condition(pipeline, "DataReady")
    assert data is not None
    assert (data["status"], data["reason"]) == ("False", "RunFailed")
    assert "ingest" in data["message"]
    assert condition(pipeline, "Ready")["status"] == "True", "a failed run is no failed deploy"  # type: ignore[index]
    warnings = [
        e for e in events_for(ns, NAME) if e["type"] == "Warning" and e["reason"] == "StageFailed"
    ]
    assert any(run_id in event["message"] for event in warnings), warnings
    # The last good data is still there and still what status reports.
    assert pipeline["status"]["lastSuccessfulRun"]["result"] == "Succeeded"
    assert _table_rows(pipeline)["raw.customers"] == CUSTOMERS
    assert query_warehouse(ns, CLAIM, operator.image, WAREHOUSE_PROBE) == before


def test_suspend_stops_new_runs(example: dict[str, Any], pipeline_namespace: str) -> None:
    ns = pipeline_namespace
    patch_spec(ns, NAME, {"suspend": True})
    wait_until(
        "the ingest CronJob suspended",
        lambda: kubectl_json("get", "cronjob", f"{NAME}-ingest", "-n", ns)["spec"]["suspend"],
        timeout=REACTION_TIMEOUT,
    )

    def suspended() -> dict[str, Any] | None:
        found = condition(get_pipeline(ns, NAME), "Suspended")
        return found if found and found["status"] == "True" else None

    assert wait_until("condition Suspended=True", suspended, timeout=REACTION_TIMEOUT)[
        "reason"
    ] == ("SuspendedBySpec")


def test_postgres_source_reads_a_real_postgresql_through_a_secret(
    operator: Operator,
    pipeline_namespace: str,
    postgres: PostgresServer,
    cluster: Cluster,
) -> None:
    ns = pipeline_namespace
    table = f"orders_{uuid.uuid4().hex[:6]}"
    with psycopg2.connect(postgres.dsn()) as connection, connection.cursor() as cursor:
        cursor.execute(
            f"create table public.{table} as select g as order_id, g * 1.5 as amount "
            "from generate_series(1, 2500) as g"
        )
    orders = {
        "name": "orders",
        "writeDisposition": "replace",
        "postgres": {
            "dsnSecretRef": {"name": "orders-db", "key": "dsn"},
            "table": f"public.{table}",
        },
    }
    pipeline = pipelines.manifest("orders", schedule="0 3 * * *", sources=[orders])
    apply_secret(ns, "orders-db", {"dsn": postgres.dsn(host=cluster.need_host_ip())})
    apply_manifest(pipeline, ns)
    wait_until("the orders CronJob", lambda: exists("cronjob", "orders-ingest", ns), timeout=120)
    kubectl("create", "job", "--from=cronjob/orders-ingest", "orders-first", "-n", ns)
    result = wait_run_finished(ns, "orders", "orders-first")
    assert result["status"]["lastRun"]["result"] == "Succeeded", result["status"]["lastRun"]
    assert _table_rows(result)["raw.orders"] == 2500
    assert condition(result, "DataReady")["status"] == "True"  # type: ignore[index]
    kubectl("delete", "datapipeline", "orders", "-n", ns, "--timeout=120s")


def test_delete_collects_the_children_and_keeps_the_warehouse(
    example: dict[str, Any], operator: Operator, pipeline_namespace: str
) -> None:
    ns = pipeline_namespace
    kubectl("delete", "datapipeline", NAME, "-n", ns, "--timeout=120s")
    wait_until(
        "the example's CronJobs, Jobs and ConfigMap garbage-collected",
        lambda: (
            not any(
                exists(kind, f"{NAME}-{suffix}", ns)
                for kind, suffix in [("configmap", "spec")] + [("cronjob", s) for s in STAGES]
            )
            and not stage_jobs(ns, NAME)
        ),
        timeout=180,
    )
    assert exists("pvc", CLAIM, ns)
    rows = query_warehouse(ns, CLAIM, operator.image, "select count(*) from raw.customers")
    assert rows == [[CUSTOMERS]]
    # Its series are gone from the operator's /metrics with it.
    mine = {"namespace": ns, "pipeline": NAME}

    def gone() -> bool:
        text = operator.metrics()  # (an answer, not an error: the operator's own series)
        served = "duckherd_resync_rounds_total" in text
        return served and not _samples(text, "duckherd_pipeline_info", **mine)

    assert wait_until("its series gone from /metrics", gone, timeout=REACTION_TIMEOUT)
