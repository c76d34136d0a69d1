"""OpenLineage events of real local runs (`duckherd run` in a subprocess, a real HTTP source
and a real receiver on loopback), validated against the official JSON Schemas."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from openlineage.client.generated.output_statistics_output_dataset import (
    OutputStatisticsOutputDatasetFacet,
)

from duckherd.status import rfc3339
from duckherd.summary import PublishedTarget, StageSummary, decode
from duckherd_jobs.context import StageContext
from duckherd_jobs.lineage import Lineage
from duckherd_jobs.lineage.events import Datasets, ingest_datasets, publish_datasets
from duckherd_jobs.lineage.naming import nominal_time, source_dataset
from duckherd_jobs.runner import run_stage
from tests import pipelines
from tests.jobs.ingest_support import http_source
from tests.jobs.lineage_support import Receiver, schema_errors
from tests.jobs.test_local_mode import (
    SECRET_ENV,
    TOKEN,
    duckherd,
    secured_api,
    stage_pod,
    write_manifest,
)
from tests.jobs.test_publish_support import (
    CHECKS,
    REDIS_ENV,
    build_mart,
    context,
    customers_select,
    record_check,
    redis_entry,
)
from tests.jobs.test_publish_support import pipeline as publish_pipeline
from tests.services import RedisServer, free_port

REPO = Path(__file__).resolve().parents[2]

NAMESPACE = "default"


def run_with_receiver(tmp_path: Path, mode: str, **env: str) -> tuple[Any, list[dict[str, Any]]]:
    with secured_api() as api, Receiver(mode) as receiver:
        manifest = write_manifest(tmp_path, api.url)
        result = duckherd(
            tmp_path,
            "run",
            str(manifest),
            env={SECRET_ENV: TOKEN, "OPENLINEAGE_URL": receiver.url, **env},
        )
        return result, receiver.events


def test_a_run_emits_start_and_complete_per_stage_valid_by_the_official_schemas(
    tmp_path: Path,
) -> None:
    result, events = run_with_receiver(tmp_path, "ok")

    assert result.returncode == 0, result.stdout + result.stderr
    # The stage's run around the child run of its one source.
    assert [(e["eventType"], e["job"]["name"]) for e in events] == [
        ("START", "default.auth-demo.ingest"),
        ("START", "default.auth-demo.ingest.customers"),
        ("COMPLETE", "default.auth-demo.ingest.customers"),
        ("COMPLETE", "default.auth-demo.ingest"),
    ]
    for event in events:
        assert schema_errors(event) == [], event
        assert TOKEN not in json.dumps(event)
    start, child, _, complete = events
    assert child["run"]["facets"]["parent"]["run"]["runId"] == start["run"]["runId"]
    assert [d["name"] for d in child["inputs"] + child["outputs"]] == ["/items", "raw.customers"]
    assert start["run"]["runId"] == complete["run"]["runId"]
    assert complete["job"] == {
        **complete["job"],
        "namespace": NAMESPACE,
        "name": "default.auth-demo.ingest",
    }
    job_type = complete["job"]["facets"]["jobType"]
    assert (job_type["processingType"], job_type["integration"]) == ("BATCH", "DUCKHERD")
    parent = complete["run"]["facets"]["parent"]
    assert (parent["job"]["namespace"], parent["job"]["name"]) == (NAMESPACE, "default.auth-demo")
    assert parent == start["run"]["facets"]["parent"]  # one pipeline run for every stage
    (source,) = complete["inputs"]
    assert source["namespace"].startswith("http://127.0.0.1:")
    assert source["name"] == "/items"
    (raw,) = complete["outputs"]
    assert (raw["namespace"], raw["name"]) == ("duckdb://default.auth-demo", "raw.customers")
    assert raw["outputFacets"]["outputStatistics"]["rowCount"] == 15


def test_a_failed_stage_emits_fail_with_its_error_and_no_secret(tmp_path: Path) -> None:
    with secured_api() as api:
        manifest = write_manifest(tmp_path, api.url)
        lineage_file = tmp_path / "lineage.jsonl"
        result = duckherd(
            tmp_path,
            "run",
            str(manifest),
            "--lineage-file",
            str(lineage_file),
            env={SECRET_ENV: "wrong-token-9e7c"},
        )

    assert result.returncode == 1
    events = [json.loads(line) for line in lineage_file.read_text().splitlines()]
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    for event in events:
        assert schema_errors(event) == [], event
        assert "wrong-token-9e7c" not in json.dumps(event)
    assert "HTTP 401" in events[1]["run"]["facets"]["errorMessage"]["message"]


def test_a_receiver_answering_500_does_not_fail_the_run(tmp_path: Path) -> None:
    result, events = run_with_receiver(tmp_path, "500")

    assert result.returncode == 0, result.stdout + result.stderr
    # The client retries the first event; its failure turns lineage off for the run.
    assert {e["eventType"] for e in events} == {"START"}
    warnings = [line for line in result.stderr.splitlines() if "lineage off" in line]
    assert len(warnings) == 1, result.stderr


def test_a_hanging_receiver_costs_one_bounded_timeout(tmp_path: Path) -> None:
    result, events = run_with_receiver(tmp_path, "hang", DUCKHERD_LINEAGE_TIMEOUT="1")

    assert result.returncode == 0, result.stdout + result.stderr
    # Lineage went off after the first event: nothing after START reached the receiver. (The
    # client's own thread may still re-send that START after its socket timeout when the run
    # outlives it, as on a loaded machine; that is the same event, not a new one.)
    assert {e["eventType"] for e in events} == {"START"}
    assert len({e["run"]["runId"] for e in events}) == 1
    assert "no answer within 1.0s" in result.stderr


@pytest.mark.parametrize(
    ("mode", "sent", "error"),
    [
        ("ok", 4, None),  # the stage's START and COMPLETE around its source's two
        ("500", 0, "emitting START failed: "),
        ("hang", 0, "emitting START failed: no answer within 1.0s"),
    ],
)
def test_a_stage_pod_reports_its_lineage_delivery_to_the_operator(
    tmp_path: Path, mode: str, sent: int, error: str | None
) -> None:
    """What the operator counts in `duckherd_lineage_*_total` and shows in status: the
    delivery in the stage pod's termination message."""
    with secured_api() as api, Receiver(mode) as receiver:
        manifest = write_manifest(tmp_path, api.url)
        env = {SECRET_ENV: TOKEN, "OPENLINEAGE_URL": receiver.url, "DUCKHERD_LINEAGE_TIMEOUT": "1"}
        result = stage_pod(tmp_path, "ingest", manifest, env)

    assert result.returncode == 0, result.stdout + result.stderr
    summary = decode((tmp_path / "termination-log").read_text(), "ingest")
    assert summary.ok and summary.lineageEvents is not None
    assert summary.lineageEvents.sent == sent
    if error is None:
        assert summary.lineageEvents.error is None
    else:
        assert (summary.lineageEvents.error or "").startswith(error)
        assert TOKEN not in (summary.lineageEvents.error or "")


def test_a_stage_without_lineage_reports_no_delivery(tmp_path: Path) -> None:
    with secured_api() as api:
        manifest = write_manifest(tmp_path, api.url)
        result = stage_pod(tmp_path, "ingest", manifest, {SECRET_ENV: TOKEN})

    assert result.returncode == 0, result.stdout + result.stderr
    summary = decode((tmp_path / "termination-log").read_text(), "ingest")
    assert summary.ok and summary.lineageEvents is None


def test_without_configuration_lineage_is_off() -> None:
    assert not Lineage.from_environment(env={}).enabled


def test_publish_targets_are_named_without_credentials(tmp_path: Path) -> None:
    pipeline = pipelines.pipeline(
        "shop",
        sources=[http_source("customers", "http://api.example/items")],
        publish=[
            {
                "table": "customer_analytics",
                "postgres": {"dsnSecretRef": {"name": "pg", "key": "dsn"}},
            },
            {
                "table": "marts.customer_analytics",
                "redis": {"urlSecretRef": {"name": "r", "key": "url"}},
            },
        ],
    )
    env = {
        "DUCKHERD_SECRET_PG_DSN": "host=db.example port=6543 dbname=shop user=u password=pg-secret",
        "DUCKHERD_SECRET_R_URL": "redis://:redis-secret@cache.example:6380/0",
    }
    ctx = StageContext(pipeline=pipeline, warehouse=tmp_path / "w.duckdb", run_id="r1", env=env)
    summary = StageSummary(
        stage="publish",
        ok=True,
        published=[
            PublishedTarget(
                table="marts.customer_analytics",
                target="postgres:public.customer_analytics",
                rows=7,
            )
        ],
    )

    inputs, outputs = publish_datasets(Datasets(ctx, None), summary)

    assert [(i.namespace, i.name) for i in inputs] == [
        ("duckdb://default.shop", "marts.customer_analytics")
    ]
    named = [(o.namespace, o.name) for o in outputs]
    assert named == [
        ("postgres://db.example:6543", "shop.public.customer_analytics"),
        ("redis://cache.example:6380", "duckherd:default:shop:marts.customer_analytics"),
    ]
    stats = (outputs[0].outputFacets or {})["outputStatistics"]
    assert isinstance(stats, OutputStatisticsOutputDatasetFacet)
    assert stats.rowCount == 7
    assert "secret" not in repr(outputs)


def test_source_urls_lose_credentials_query_and_fragment(tmp_path: Path) -> None:
    url = "https://user:pa55word@api.example:8443/v1/items?api_key=k3y&page=1#top"
    pipeline = pipelines.pipeline("shop", sources=[http_source("customers", url)])
    ctx = StageContext(pipeline=pipeline, warehouse=tmp_path / "w.duckdb", run_id="r1", env={})

    inputs, outputs = ingest_datasets(Datasets(ctx, None), StageSummary(stage="ingest", ok=True))

    assert [(i.namespace, i.name) for i in inputs] == [("https://api.example:8443", "/v1/items")]
    assert [(o.namespace, o.name, o.outputFacets) for o in outputs] == [
        ("duckdb://default.shop", "raw.customers", {})
    ]


def test_a_closed_receiver_does_not_fail_the_run(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there: every connection is refused
    with secured_api() as api:
        manifest = write_manifest(tmp_path, api.url)
        result = duckherd(
            tmp_path,
            "run",
            str(manifest),
            env={SECRET_ENV: TOKEN, "OPENLINEAGE_URL": f"http://127.0.0.1:{port}"},
        )

    assert result.returncode == 0, result.stdout + result.stderr
    warnings = [line for line in result.stderr.splitlines() if "lineage off" in line]
    assert len(warnings) == 1, result.stderr


def test_a_scheduled_run_carries_its_nominal_time(tmp_path: Path) -> None:
    """A stage pod of a run its CronJob started: the run id is the Job's name,
    `<cronjob>-<scheduled minute since the epoch>` (here 06:00 UTC, the daily schedule)."""
    scheduled = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
    job_name = f"auth-demo-ingest-{int(scheduled.timestamp()) // 60}"
    with secured_api() as api, Receiver("ok") as receiver:
        manifest = write_manifest(tmp_path, api.url)
        env = {SECRET_ENV: TOKEN, "OPENLINEAGE_URL": receiver.url, "DUCKHERD_JOB_NAME": job_name}
        result = stage_pod(tmp_path, "ingest", manifest, env)
        events = receiver.events

    assert result.returncode == 0, result.stdout + result.stderr
    stage = [e for e in events if e["job"]["name"] == "default.auth-demo.ingest"]
    assert [e["eventType"] for e in stage] == ["START", "COMPLETE"]
    for event in stage:
        assert schema_errors(event) == [], event
        assert event["run"]["facets"]["nominalTime"] == {
            **event["run"]["facets"]["nominalTime"],
            "nominalStartTime": "2026-12-02T06:00:00Z",
            "nominalEndTime": "2026-12-03T06:00:00Z",
        }


@pytest.mark.parametrize(
    ("run_id", "expected"),
    [
        ("shop-ingest-29409480", ("2025-12-01T06:00:00Z", "2025-12-02T06:00:00Z")),
        ("shop-ingest-29409481", None),  # 06:01: not a time the schedule fires
        ("shop-ingest-manual-1", None),
        ("20251201t060000-abc123", None),  # a run started by hand (run-now, local mode)
        ("shop-transform-29409510", ("2025-12-01T06:30:00Z", "2025-12-02T06:30:00Z")),
    ],
)
def test_nominal_time_is_read_from_the_cronjobs_job_name(
    run_id: str, expected: tuple[str, str] | None
) -> None:
    pipeline = pipelines.pipeline(
        "shop",
        sources=[http_source("customers", "http://api.example/items")],
        transform={"dbt": {"schedule": "30 6 * * *"}},
    )
    found = nominal_time(pipeline, run_id)
    assert (None if found is None else (rfc3339(found[0]), rfc3339(found[1]))) == expected


def test_postgres_sources_are_named_host_port_and_db_schema_table() -> None:
    pipeline = pipelines.pipeline(
        "shop",
        sources=[
            {
                "name": "orders",
                "postgres": {
                    "dsnSecretRef": {"name": "crm", "key": "dsn"},
                    "table": "sales.orders",
                },
            },
            {
                "name": "users",
                "postgres": {
                    "connection": {"host": "db.example", "database": "crm", "user": "u"},
                    "table": "users",
                },
            },
            {
                "name": "recent",
                "postgres": {
                    "connection": {"host": "db.example", "database": "crm", "user": "u"},
                    "query": "SELECT 1",
                },
            },
        ],
    )
    env = {
        "DUCKHERD_SECRET_CRM_DSN": "postgresql://u:pg-secret@crm.example:6543/crm?sslmode=require"
    }
    named = [source_dataset(source, env) for source in pipeline.spec.sources]
    assert named == [
        ("postgres://crm.example:6543", "crm.sales.orders"),
        ("postgres://db.example:5432", "crm.public.users"),
        None,  # a query: its tables would need a SQL parser
    ]


LAZY_RUN = """
import sys
from pathlib import Path
from duckherd_jobs.context import StageContext
from duckherd_jobs.runner import run_stage
from tests import pipelines

data = Path(sys.argv[1])
data.joinpath("rows.csv").write_text("id,name\\n1,a\\n2,b\\n")
pipeline = pipelines.pipeline(
    "lazy", sources=[{"name": "rows", "file": {"path": str(data / "rows.csv"), "format": "csv"}}]
)
env = dict(arg.split("=", 1) for arg in sys.argv[2:])
ctx = StageContext(pipeline=pipeline, warehouse=data / "w.duckdb", run_id="r1", env=env)
summary = run_stage("ingest", ctx)
assert summary.ok, summary.error
print(sorted({name.split(".")[0] for name in sys.modules if name.startswith("openlineage")}))
"""


@pytest.mark.parametrize(
    ("env", "loaded"),
    [
        ([], "[]"),
        (["OPENLINEAGE__TRANSPORT__TYPE=console"], "['openlineage']"),
    ],
)
def test_a_stage_without_lineage_never_imports_the_client(
    tmp_path: Path, env: list[str], loaded: str
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENLINEAGE", "DUCKHERD_"))}
    done = subprocess.run(
        [sys.executable, "-c", LAZY_RUN, str(tmp_path), *env],
        env=clean,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == loaded


@pytest.mark.services
def test_a_blocked_publish_emits_fail_naming_the_checks_and_publishes_nothing(
    tmp_path: Path, redis: RedisServer
) -> None:
    warehouse = tmp_path / "w.duckdb"
    build_mart(warehouse, customers_select(10, 1))
    record_check(warehouse, "run-1", [("ids present", "error", False)])
    spec = publish_pipeline([redis_entry(keyPrefix="lineage:blocked")], checks=CHECKS)
    ctx = context(warehouse, spec, {REDIS_ENV: redis.url()}, run_id="run-1")
    lineage_file = tmp_path / "lineage.jsonl"

    summary = run_stage("publish", ctx, Lineage.from_environment(lineage_file, env={}))

    assert summary.blocked
    events = [json.loads(line) for line in lineage_file.read_text().splitlines()]
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    for event in events:
        assert schema_errors(event) == [], event
        assert redis.password not in json.dumps(event)
    fail = events[1]
    assert "ids present" in fail["run"]["facets"]["errorMessage"]["message"]
    (target,) = fail["outputs"]
    assert target["name"] == "lineage:blocked"
    assert "outputStatistics" not in target["outputFacets"]  # nothing was published


@pytest.mark.parametrize("own_url", [True, False])
def test_a_pipelines_api_key_goes_to_its_receiver_as_a_bearer_token_and_nowhere_else(
    tmp_path: Path, own_url: bool
) -> None:
    """`spec.lineage.apiKeySecretRef` with the pipeline's own `url`, or alone: then for the
    operator's default receiver (OPENLINEAGE_URL)."""
    key = "lineage-key-5c2e"
    with Receiver("ok") as receiver:
        settings: dict[str, Any] = {"apiKeySecretRef": {"name": "marquez", "key": "apiKey"}}
        env = {"DUCKHERD_SECRET_MARQUEZ_APIKEY": key}
        if own_url:
            settings["url"] = receiver.url
        else:
            env["OPENLINEAGE_URL"] = receiver.url
        pipeline = pipelines.pipeline(
            "shop", sources=[http_source("customers", "http://api.example/items")], lineage=settings
        )
        ctx = StageContext(pipeline=pipeline, warehouse=tmp_path / "w.duckdb", run_id="r1", env=env)

        Lineage.from_environment(env=env, pipeline=pipeline).start("ingest", ctx)

        assert receiver.authorization == [f"Bearer {key}"]
        (event,) = receiver.events
        assert schema_errors(event) == []
        assert key not in json.dumps(event)


def test_a_pipeline_turns_lineage_off_whatever_the_environment_says() -> None:
    pipeline = pipelines.pipeline(
        "shop",
        sources=[http_source("customers", "http://api.example/items")],
        lineage={"enabled": False},
    )
    env = {"OPENLINEAGE_URL": "http://127.0.0.1:9"}
    assert Lineage.from_environment(env=env).enabled
    assert not Lineage.from_environment(env=env, pipeline=pipeline).enabled
