"""Properties across runs: failed runs change nothing, incremental catch-up is exact, large
pages keep every column, and two ingest processes on one warehouse serialize."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import yaml

from duckherd.summary import decode
from duckherd_jobs.demo_source import DemoSource
from tests.jobs.ingest_support import (
    FakeApi,
    columns,
    customers,
    http_source,
    ingest,
    pipeline,
    pod_command,
    query,
    snapshot,
)


def test_an_incremental_run_after_a_failed_one_loads_exactly_the_missing_rows(
    tmp_path: Path,
) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    with FakeApi(customers(30, day=1)) as api:
        source = http_source(
            "items",
            api.url,
            incremental={"cursorField": "updated_at"},
            http={"incrementalParam": "updated_since", "maxRetries": 1},
        )
        spec = pipeline(source)
        assert ingest(spec, warehouse, "run-1").tables["raw.items"].loaded == 30
        before = snapshot(warehouse)
        api.state.records.extend(customers(25, start=31, day=2))
        api.fail(page=2, fault="500", times=2)
        failed = ingest(spec, warehouse, "run-2")
        assert not failed.ok
        assert snapshot(warehouse) == before
        caught_up = ingest(spec, warehouse, "run-3")
        sent = [r.params.get("updated_since") for r in api.requests if r.page_key == 1]
    assert caught_up.ok, caught_up.error
    assert (caught_up.tables["raw.items"].loaded, caught_up.tables["raw.items"].rows) == (25, 55)
    assert query(warehouse, "SELECT count(DISTINCT id), min(id), max(id) FROM raw.items") == [
        (55, 1, 55)
    ]
    assert query(warehouse, "SELECT min(id), max(id) FROM raw.items WHERE _run_id = 'run-3'") == [
        (31, 55)
    ]
    # run-2 and run-3 both asked for what came after run-1's cursor.
    assert sent[0] is None
    assert sent[1] == sent[2] == "2026-01-01T00:00:30.000000Z"


def test_a_column_first_seen_past_the_sampled_pages_is_kept(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    with FakeApi(customers(25_000)) as api:
        api.state.extra_on_page[24] = {"tier": "gold"}
        source = http_source(
            "items",
            api.url,
            http={"pagination": {"type": "page", "pageSize": 1000, "totalPath": "total"}},
        )
        summary = ingest(pipeline(source), warehouse)
    assert summary.ok, summary.error
    assert query(
        warehouse, "SELECT count(*) FILTER (WHERE tier = 'gold'), count(*) FROM raw.items"
    ) == [(1000, 25_000)]


def test_a_value_that_does_not_fit_the_sampled_type_is_read_again_in_full(
    tmp_path: Path,
) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    with FakeApi(customers(25_000)) as api:
        api.state.extra_on_page[25] = {"revenue": "n/a"}
        source = http_source(
            "items",
            api.url,
            http={"pagination": {"type": "page", "pageSize": 1000, "totalPath": "total"}},
        )
        summary = ingest(pipeline(source), warehouse)
    assert summary.ok, summary.error
    # Numbers and text in one field: full inference keeps the values as JSON.
    assert columns(warehouse, "raw.items")["revenue"] == "JSON"
    assert query(
        warehouse,
        "SELECT count(*) FILTER (WHERE json_extract_string(revenue, '$') = 'n/a'), "
        "count(*) FILTER (WHERE revenue::VARCHAR = '1.5'), count(*) FROM raw.items",
    ) == [(1000, 1, 25_000)]


def test_merge_reruns_of_the_demo_source_produce_no_duplicates(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    as_of = datetime(2026, 3, 1, 6, tzinfo=UTC)
    with DemoSource(700, as_of=as_of) as url:
        source = http_source(
            "customers",
            f"{url}/customers",
            writeDisposition="merge",
            primaryKey=["customer_id"],
            http={"pagination": {"type": "link", "pageSize": 100}, "params": {"page_size": "100"}},
        )
        for run in ("run-1", "run-2", "run-3"):
            summary = ingest(pipeline(source), warehouse, run)
            assert summary.ok, summary.error
    assert query(warehouse, "SELECT count(*), count(DISTINCT customer_id) FROM raw.customers") == [
        (700, 700)
    ]
    assert query(warehouse, "SELECT DISTINCT _run_id FROM raw.customers") == [("run-3",)]


def test_two_ingest_processes_at_once_serialize_without_corruption(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    with DemoSource(3000, as_of=datetime(2026, 3, 1, 6, tzinfo=UTC)) as url:
        manifest = pipeline(
            http_source(
                "customers",
                f"{url}/customers",
                incremental={"cursorField": "updated_at"},
                http={
                    "incrementalParam": "updated_since",
                    "pagination": {"type": "page", "pageSize": 100, "totalPath": "total"},
                },
            )
        )
        spec = tmp_path / "pipeline.yaml"
        spec.write_text(yaml.safe_dump(manifest.model_dump(mode="json", exclude_none=True)))
        processes = [
            subprocess.Popen(
                pod_command(spec, warehouse, tmp_path / f"termination-{n}", f"run-{n}"),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for n in (1, 2)
        ]
        outputs = [process.communicate(timeout=120)[0].decode() for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    # Both fetched everything; the cursor re-read under the lock keeps the second from
    # appending the same rows again.
    assert query(warehouse, "SELECT count(*), count(DISTINCT customer_id) FROM raw.customers") == [
        (3000, 3000)
    ]
    assert query(
        warehouse, "SELECT count(*) FROM _duckherd.runs WHERE stage = 'ingest' AND ok"
    ) == [(2,)]
    loaded = sorted(
        decode((tmp_path / f"termination-{n}").read_text()).tables["raw.customers"].loaded or 0
        for n in (1, 2)
    )
    assert loaded == [0, 3000]
