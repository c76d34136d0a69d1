"""The lineage of one whole run of the customer-analytics example: `duckherd run` in a
subprocess (real HTTP source, DuckDB, dbt, checks, PostgreSQL and Redis targets) writing its
OpenLineage events with `--lineage-file`, each valid by the official JSON Schemas, together
one connected graph from the source API to the published targets."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import psycopg2
import pytest
from psycopg2 import sql

from duckherd_jobs.demo_source import DemoSource
from duckherd_jobs.redaction import secret_fragments
from tests.jobs.lineage_support import schema_errors
from tests.jobs.test_local_mode import DUCKHERD
from tests.services import PostgresServer, RedisServer

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "examples" / "customer-analytics" / "pipeline.yaml"
CUSTOMERS = 300
DATABASE = "lineage_graph"
WAREHOUSE = "duckdb://default.customer-analytics"
JOB = "default.customer-analytics"

Node = tuple[str, str]  # (namespace, name) of a dataset


@dataclass(frozen=True)
class ExampleRun:
    events: list[dict[str, Any]]
    warehouse: Path
    api: str
    postgres: PostgresServer
    redis: RedisServer
    secrets: list[str]


def _fresh_database(postgres: PostgresServer) -> str:
    connection = psycopg2.connect(postgres.dsn())
    connection.autocommit = True  # CREATE DATABASE runs outside a transaction
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(DATABASE)))
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    connection.close()
    return postgres.dsn(database=DATABASE)


@pytest.fixture(scope="module")
def example_run(
    postgres: PostgresServer, redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> ExampleRun:
    directory = tmp_path_factory.mktemp("lineage-graph")
    lineage_file = directory / "lineage.jsonl"
    warehouse = directory / "customer-analytics.duckdb"
    dsn, cache = _fresh_database(postgres), redis.url(db=3)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DUCKHERD_")}
    with DemoSource(CUSTOMERS) as api:
        result = subprocess.run(
            [
                *(str(DUCKHERD), "run", str(MANIFEST)),
                *("--warehouse", str(warehouse), "--lineage-file", str(lineage_file)),
            ],
            env={
                **environment,
                "DUCKHERD_SOURCE_URL_CUSTOMERS": f"{api}/customers",
                "DUCKHERD_SOURCE_URL_ORDERS": f"{api}/orders",
                "DUCKHERD_SECRET_DUCKHERD_CACHE_URL": cache,
                "DUCKHERD_SECRET_DUCKHERD_APPDB_DSN": dsn,
            },
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=900,  # about 30 s on an idle machine: four stages, dbt and GX included
            check=False,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    events = [json.loads(line) for line in lineage_file.read_text().splitlines()]
    return ExampleRun(events, warehouse, api, postgres, redis, [dsn, cache])


def _dataset(entry: dict[str, Any]) -> Node:
    return entry["namespace"], entry["name"]


def _finished(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["eventType"] in ("COMPLETE", "FAIL")]


def test_every_event_is_valid_by_the_official_schemas_and_holds_no_secret(
    example_run: ExampleRun,
) -> None:
    assert example_run.events
    fragments = [f for secret in example_run.secrets for f in secret_fragments(secret)]
    for event in example_run.events:
        assert schema_errors(event) == [], event
        text = json.dumps(event)
        leaked = [fragment for fragment in fragments if fragment in text]
        assert leaked == [], event


def test_each_run_has_a_start_and_exactly_one_end_under_one_pipeline_run(
    example_run: ExampleRun,
) -> None:
    by_run: dict[str, list[str]] = defaultdict(list)
    jobs: dict[str, str] = {}
    for event in example_run.events:
        by_run[event["run"]["runId"]].append(event["eventType"])
        jobs[event["run"]["runId"]] = event["job"]["name"]
    for run_id, types in by_run.items():
        assert types == ["START", "COMPLETE"], (jobs[run_id], types)

    stages = {
        e["job"]["name"]: e
        for e in _finished(example_run.events)
        if e["job"]["name"].count(".") == 2
    }
    assert list(stages) == [
        f"{JOB}.{stage}" for stage in ("ingest", "transform", "check", "publish")
    ]
    parents = {json.dumps(e["run"]["facets"]["parent"], sort_keys=True) for e in stages.values()}
    assert len(parents) == 1  # one pipeline run
    (parent,) = [json.loads(p) for p in parents]
    assert (parent["job"]["namespace"], parent["job"]["name"]) == ("default", JOB)
    assert parent["root"]["run"]["runId"] == parent["run"]["runId"]
    # Each source is a child run of the ingest's run, each dbt model one of the transform's,
    # under the same root.
    children = [e for e in _finished(example_run.events) if e["job"]["name"].count(".") == 3]
    assert sorted(e["job"]["name"] for e in children) == [
        f"{JOB}.ingest.customers",
        f"{JOB}.ingest.orders",
        f"{JOB}.transform.customer_analytics",
        f"{JOB}.transform.orders",
        f"{JOB}.transform.stg_salesforce__customers",
        f"{JOB}.transform.stg_salesforce__orders",
    ]
    for child in children:
        facet = child["run"]["facets"]["parent"]
        stage = stages[facet["job"]["name"]]
        assert child["job"]["name"].startswith(stage["job"]["name"] + ".")
        assert facet["run"]["runId"] == stage["run"]["runId"]
        assert facet["root"]["run"]["runId"] == parent["run"]["runId"]
    # A local run is started by hand: no nominal (scheduled) time.
    assert all("nominalTime" not in e["run"]["facets"] for e in example_run.events)


def test_the_events_form_one_graph_from_the_sources_to_the_targets(
    example_run: ExampleRun,
) -> None:
    """The finest runs — each source, each dbt model, publish — pair each input with each
    output: that graph is the example's, from the APIs to the published table and keys."""
    edges: set[tuple[Node, str, Node]] = set()
    for event in _finished(example_run.events):
        job = event["job"]["name"].removeprefix(JOB + ".")
        if job in ("ingest", "transform", "check"):  # stage-wide: their children are finer
            continue
        for source in event["inputs"]:
            for target in event["outputs"]:
                edges.add((_dataset(source), job, _dataset(target)))

    api = example_run.api.removesuffix("/")
    customers, orders = (api, "/customers"), (api, "/orders")
    raw, raw_orders = (WAREHOUSE, "raw.customers"), (WAREHOUSE, "raw.orders")
    staging = (WAREHOUSE, "staging.stg_salesforce__customers")
    staging_orders = (WAREHOUSE, "staging.stg_salesforce__orders")
    mart, mart_orders = (WAREHOUSE, "marts.customer_analytics"), (WAREHOUSE, "marts.orders")
    pg, cache = example_run.postgres, example_run.redis
    table = (f"postgres://{pg.host}:{pg.port}", f"{DATABASE}.analytics.customer_analytics")
    keys = (
        f"redis://{cache.host}:{cache.port}",
        "duckherd:default:customer-analytics:marts.customer_analytics",
    )
    assert edges == {
        (customers, "ingest.customers", raw),
        (orders, "ingest.orders", raw_orders),
        (raw, "transform.stg_salesforce__customers", staging),
        (raw_orders, "transform.stg_salesforce__orders", staging_orders),
        (staging, "transform.customer_analytics", mart),
        (staging_orders, "transform.orders", mart_orders),
        (staging, "transform.orders", mart_orders),
        (mart, "publish", table),
        (mart, "publish", keys),
    }
    # Connected: the targets are reached from the customers API.
    reached, frontier = {customers}, [customers]
    while frontier:
        node = frontier.pop()
        for a, _, b in edges:
            if a == node and b not in reached:
                reached.add(b)
                frontier.append(b)
    assert {raw, staging, mart, table, keys} <= reached

    # The stage-wide runs agree: ingest reads both APIs, the transform reads the raw tables.
    ingest_in, ingest_out = _facets(example_run.events, "ingest")
    assert set(ingest_in) == {customers, orders}
    assert set(ingest_out) == {raw, raw_orders}
    transform_in, transform_out = _facets(example_run.events, "transform")
    assert set(transform_in) == {raw, raw_orders}
    assert set(transform_out) == {staging, staging_orders, mart, mart_orders}


def _facets(events: list[dict[str, Any]], job: str) -> tuple[dict[Node, Any], dict[Node, Any]]:
    (event,) = [e for e in _finished(events) if e["job"]["name"] == f"{JOB}.{job}"]
    return (
        {_dataset(d): d for d in event["inputs"]},
        {_dataset(d): d for d in event["outputs"]},
    )


def test_outputs_carry_their_schema_and_row_count(example_run: ExampleRun) -> None:
    _, ingested = _facets(example_run.events, "ingest")
    raw = ingested[(WAREHOUSE, "raw.customers")]
    assert raw["outputFacets"]["outputStatistics"]["rowCount"] == CUSTOMERS
    with duckdb.connect(str(example_run.warehouse), read_only=True) as connection:
        described = {
            table: [(r[0], r[1]) for r in connection.execute(f"DESCRIBE {table}").fetchall()]
            for table in ("raw.customers", "marts.customer_analytics")
        }
    fields = [(f["name"], f["type"]) for f in raw["facets"]["schema"]["fields"]]
    assert fields == described["raw.customers"]

    _, built = _facets(example_run.events, "transform")
    mart = built[(WAREHOUSE, "marts.customer_analytics")]
    assert mart["outputFacets"]["outputStatistics"]["rowCount"] == CUSTOMERS
    fields = [(f["name"], f["type"]) for f in mart["facets"]["schema"]["fields"]]
    assert fields == described["marts.customer_analytics"]

    _, published = _facets(example_run.events, "publish")
    assert [d["outputFacets"]["outputStatistics"]["rowCount"] for d in published.values()] == [
        CUSTOMERS,
        CUSTOMERS,
    ]


def test_the_check_assertions_and_metrics_are_the_check_stages(example_run: ExampleRun) -> None:
    checked, _ = _facets(example_run.events, "check")
    assertions = [
        (a["name"], a["success"])
        for dataset in checked.values()
        for a in dataset["inputFacets"].get("dataQualityAssertions", {}).get("assertions", [])
    ]
    with duckdb.connect(str(example_run.warehouse), read_only=True) as connection:
        row = connection.execute(
            "SELECT summary FROM _duckherd.runs WHERE stage = 'check'"
        ).fetchone()
    assert row is not None
    results = json.loads(row[0])["checks"]["results"]
    # What status.quality counts: the check stage's expectations and the run's dbt tests.
    assert Counter(assertions) == Counter((r["name"], r["success"]) for r in results)

    mart = checked[(WAREHOUSE, "marts.customer_analytics")]["inputFacets"]
    by_name = {a["name"]: a for a in mart["dataQualityAssertions"]["assertions"]}
    not_null = by_name["marts.customer_analytics.customer_id:expect_column_values_to_not_be_null"]
    assert (not_null["assertion"], not_null["column"]) == (
        "expect_column_values_to_not_be_null",
        "customer_id",
    )
    metrics = mart["dataQualityMetrics"]
    assert metrics["rowCount"] == CUSTOMERS
    assert metrics["columnMetrics"]["customer_id"]["nullCount"] == 0
    # The drift check watches monthly_ltv: the check stage counted its distinct values.
    assert metrics["columnMetrics"]["monthly_ltv"]["distinctCount"] > 0
    assert "distinctCount" not in metrics["columnMetrics"]["customer_id"]
