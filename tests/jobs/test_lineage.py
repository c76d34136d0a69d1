"""OpenLineage events of real local runs (`duckherd run` in a subprocess, a real HTTP source
and a real receiver on loopback), validated against the official JSON Schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openlineage.client.generated.output_statistics_output_dataset import (
    OutputStatisticsOutputDatasetFacet,
)

from duckherd.summary import PublishedTarget, StageSummary
from duckherd_jobs.context import StageContext
from duckherd_jobs.lineage import Lineage, ingest_datasets, publish_datasets
from tests import pipelines
from tests.jobs.ingest_support import http_source
from tests.jobs.lineage_support import Receiver, schema_errors
from tests.jobs.test_local_mode import SECRET_ENV, TOKEN, duckherd, secured_api, write_manifest

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
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    for event in events:
        assert schema_errors(event) == [], event
        assert TOKEN not in json.dumps(event)
    start, complete = events
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

    inputs, outputs = publish_datasets(ctx, summary)

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

    inputs, outputs = ingest_datasets(ctx, StageSummary(stage="ingest", ok=True))

    assert [(i.namespace, i.name) for i in inputs] == [("https://api.example:8443", "/v1/items")]
    assert [(o.namespace, o.name, o.outputFacets) for o in outputs] == [
        ("duckdb://default.shop", "raw.customers", {})
    ]
