"""The ingest stage against real HTTP servers on loopback: pagination, faults, evolution."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from duckherd_jobs.demo_source import DemoSource
from tests.jobs.ingest_support import (
    FakeApi,
    columns,
    customers,
    http_source,
    ingest,
    pipeline,
    query,
    snapshot,
)

AS_OF = datetime(2026, 3, 1, 6, tzinfo=UTC)


def _demo_pipeline(url: str, **fields: object) -> dict[str, object]:
    return http_source(
        "customers",
        f"{url}/customers",
        http={
            "pagination": {"type": "page", "pageSize": 100, "totalPath": "total"},
            "incrementalParam": "updated_since",
        },
        **fields,
    )


def test_demo_source_loads_every_customer_with_types_and_load_metadata(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    with DemoSource(1050, as_of=AS_OF) as url:
        summary = ingest(pipeline(_demo_pipeline(url)), warehouse)
    assert summary.ok, summary.error
    table = summary.tables["raw.customers"]
    assert (table.rows, table.loaded) == (1050, 1050)
    assert columns(warehouse, "raw.customers") == {
        "customer_id": "BIGINT",
        "name": "VARCHAR",
        "email": "VARCHAR",
        "country": "VARCHAR",
        "segment": "VARCHAR",
        "created_at": "TIMESTAMP WITH TIME ZONE",
        "updated_at": "TIMESTAMP WITH TIME ZONE",
        "total_revenue": "DOUBLE",
        "orders_count": "BIGINT",
        "is_active": "BOOLEAN",
        "_loaded_at": "TIMESTAMP WITH TIME ZONE",
        "_run_id": "VARCHAR",
    }
    [(distinct_ids, first, last, run_ids)] = query(
        warehouse,
        "SELECT count(DISTINCT customer_id), min(customer_id), max(customer_id), "
        "list(DISTINCT _run_id) FROM raw.customers",
    )
    assert (distinct_ids, first, last, run_ids) == (1050, 1, 1050, ["run-1"])


def test_demo_source_is_deterministic_and_recent() -> None:
    with DemoSource(300, as_of=AS_OF) as first, DemoSource(300, as_of=AS_OF) as second:
        one = httpx.get(f"{first}/customers", params={"page": 2, "page_size": 50}).content
        two = httpx.get(f"{second}/customers", params={"page": 2, "page_size": 50}).content
        latest = max(
            r["updated_at"]
            for r in httpx.get(f"{first}/customers", params={"page_size": 300}).json()["data"]
        )
    assert one == two
    newest = datetime.fromisoformat(latest)
    assert AS_OF - timedelta(hours=24) < newest <= AS_OF


def test_incremental_run_sends_the_stored_cursor_and_loads_nothing_new(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    with DemoSource(500, as_of=AS_OF) as url:
        spec = pipeline(_demo_pipeline(url, incremental={"cursorField": "updated_at"}))
        first = ingest(spec, warehouse, run_id="run-1")
        second = ingest(spec, warehouse, run_id="run-2")
    assert first.ok and second.ok, (first.error, second.error)
    assert first.tables["raw.customers"].loaded == 500
    assert (second.tables["raw.customers"].rows, second.tables["raw.customers"].loaded) == (500, 0)
    [(cursor,)] = query(warehouse, "SELECT cursor_value FROM _duckherd.state")
    [(latest,)] = query(warehouse, "SELECT max(updated_at) FROM raw.customers")
    assert datetime.fromisoformat(cursor) == latest


@pytest.mark.parametrize(
    ("mode", "pagination"),
    [
        ("page", {"type": "page", "pageSize": 7, "totalPath": "total"}),
        ("page", {"type": "page", "pageSize": 7}),
        ("offset", {"type": "offset", "pageSize": 7, "sizeParam": "limit", "totalPath": "total"}),
        ("cursor", {"type": "cursor", "pageSize": 7, "cursorPath": "next_cursor"}),
        ("link", {"type": "link", "pageSize": 7}),
        ("none", {"type": "none"}),
    ],
    ids=["page-total", "page-until-short", "offset", "cursor", "link", "none-root-list"],
)
def test_every_pagination_mode_loads_every_record_once(
    tmp_path: Path, mode: str, pagination: dict[str, object]
) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    records = customers(50)
    with FakeApi(records, mode=mode) as api:
        source = http_source("items", api.url, http={"pagination": pagination})
        if mode == "none":
            source["http"]["recordsPath"] = ""
        if mode in ("cursor", "link"):  # these modes send no page size of their own
            source["http"]["params"] = {"page_size": "7"}
        summary = ingest(pipeline(source), warehouse)
    assert summary.ok, summary.error
    assert query(warehouse, "SELECT count(*), count(DISTINCT id) FROM raw.items") == [(50, 50)]


@pytest.mark.parametrize(
    ("mode", "pagination"),
    [
        ("page", {"type": "page", "pageSize": 20, "totalPath": "total"}),
        ("page", {"type": "page", "pageSize": 20}),
        ("offset", {"type": "offset", "pageSize": 20, "sizeParam": "limit", "totalPath": "total"}),
    ],
    ids=["page-total", "page-until-short", "offset"],
)
def test_a_server_capping_the_page_size_loses_nothing(
    tmp_path: Path, mode: str, pagination: dict[str, object]
) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    with FakeApi(customers(50), mode=mode) as api:
        api.state.max_page_size = 8
        summary = ingest(
            pipeline(http_source("items", api.url, http={"pagination": pagination})), warehouse
        )
    assert summary.ok, summary.error
    assert query(warehouse, "SELECT count(*), count(DISTINCT id) FROM raw.items") == [(50, 50)]


def test_a_wrong_records_path_fails_naming_it(tmp_path: Path) -> None:
    with FakeApi(customers(5)) as api:
        source = http_source("items", api.url, http={"recordsPath": "results"})
        summary = ingest(pipeline(source), tmp_path / "warehouse.duckdb")
    assert not summary.ok
    assert summary.error is not None
    assert "recordsPath 'results' is not in the response (top-level keys: data, total)" in (
        summary.error
    )


@pytest.mark.parametrize(
    ("fault", "value"),
    [("500", 0.0), ("slow", 2.0), ("cut", 0.0), ("broken", 0.0), ("reset", 0.0)],
)
def test_transient_faults_mid_pagination_are_retried(
    tmp_path: Path, fault: str, value: float
) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    with FakeApi(customers(40)) as api:
        api.fail(page=3, fault=fault, value=value)
        source = http_source("items", api.url, http={"timeoutSeconds": 0.5, "concurrency": 2})
        summary = ingest(pipeline(source), warehouse)
        page_three_requests = [r for r in api.requests if r.page_key == 3]
    assert summary.ok, summary.error
    assert len(page_three_requests) == 2
    assert query(warehouse, "SELECT count(*), count(DISTINCT id) FROM raw.items") == [(40, 40)]


def test_429_waits_for_retry_after_before_retrying(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    with FakeApi(customers(30)) as api:
        api.fail(page=2, fault="429", value=1)
        summary = ingest(pipeline(http_source("items", api.url)), warehouse)
        attempts = [r.at for r in api.requests if r.page_key == 2]
    assert summary.ok, summary.error
    assert len(attempts) == 2
    # Backoff alone would retry after ~0.25 s; the server asked for 1 s.
    assert attempts[1] - attempts[0] >= 0.95


def test_retries_exhausted_fail_naming_the_source_and_change_nothing(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    with FakeApi(customers(30)) as api:
        spec = pipeline(http_source("items", api.url, incremental={"cursorField": "updated_at"}))
        assert ingest(spec, warehouse, run_id="run-1").ok
        before = snapshot(warehouse)
        api.state.records.extend(customers(30, start=31, day=2))
        api.fail(page=2, fault="500", times=4)
        summary = ingest(spec, warehouse, run_id="run-2")
    assert not summary.ok
    assert summary.error is not None
    assert "source items" in summary.error
    assert "HTTP 500" in summary.error
    assert snapshot(warehouse) == before


def test_json_that_stays_broken_fails_cleanly(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    with FakeApi(customers(30)) as api:
        api.fail(page=2, fault="broken", times=10)
        summary = ingest(pipeline(http_source("items", api.url)), warehouse)
    assert not summary.ok
    assert summary.error is not None
    assert "source items" in summary.error
    assert "not complete JSON" in summary.error
    assert query(warehouse, "SELECT count(*) FROM _duckherd.state") == [(0,)]


def test_a_column_appearing_on_a_later_page_is_added(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    with FakeApi(customers(300)) as api:
        api.state.extra_on_page[28] = {"tier": "gold"}
        source = http_source(
            "items",
            api.url,
            http={"pagination": {"type": "page", "pageSize": 10, "totalPath": "total"}},
        )
        summary = ingest(pipeline(source), warehouse)
    assert summary.ok, summary.error
    assert columns(warehouse, "raw.items")["tier"] == "VARCHAR"
    assert query(
        warehouse, "SELECT count(*) FILTER (WHERE tier = 'gold'), count(*) FROM raw.items"
    ) == [(10, 300)]


def test_merge_keeps_the_last_duplicate_across_pages_and_reruns_add_nothing(
    tmp_path: Path,
) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    records = customers(25)
    records[22] = {**records[3], "name": "customer 4, updated later"}  # id 4 on pages 1 and 3
    with FakeApi(records) as api:
        source = http_source("items", api.url, writeDisposition="merge", primaryKey=["id"])
        first = ingest(pipeline(source), warehouse, run_id="run-1")
        second = ingest(pipeline(source), warehouse, run_id="run-2")
    assert first.ok and second.ok, (first.error, second.error)
    assert second.tables["raw.items"].rows == 24
    assert query(warehouse, "SELECT count(*), count(DISTINCT id) FROM raw.items") == [(24, 24)]
    assert query(warehouse, "SELECT name, _run_id FROM raw.items WHERE id = 4") == [
        ("customer 4, updated later", "run-2")
    ]


def test_replace_swaps_the_table_and_append_adds(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    with FakeApi(customers(12)) as api:
        replace = http_source("items", api.url, writeDisposition="replace")
        append = http_source("log", api.url)
        for run in ("run-1", "run-2"):
            assert ingest(pipeline(replace, append), warehouse, run_id=run).ok
    assert query(warehouse, "SELECT count(*) FROM raw.items") == [(12,)]
    assert query(warehouse, "SELECT count(*) FROM raw.log") == [(24,)]


@pytest.mark.parametrize(
    ("auth_type", "secret", "expect_header", "expect_param"),
    [
        ("bearer", "tok-123", ("Authorization", "Bearer tok-123"), None),
        ("header", "key-456", ("X-Api-Key", "key-456"), None),
        ("query", "q-789", None, ("api_key", "q-789")),
        ("basic", "user:pw-000", ("Authorization", "Basic dXNlcjpwdy0wMDA="), None),
    ],
)
def test_auth_from_secrets_reaches_the_api(
    tmp_path: Path,
    auth_type: str,
    secret: str,
    expect_header: tuple[str, str] | None,
    expect_param: tuple[str, str] | None,
) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    auth = {"type": auth_type, "secretRef": {"name": "api", "key": "token"}}
    if auth_type == "header":
        auth["headerName"] = "X-Api-Key"
    if auth_type == "query":
        auth["paramName"] = "api_key"
    with FakeApi(customers(15)) as api:
        if expect_header:
            api.state.required_headers[expect_header[0]] = expect_header[1]
        if expect_param:
            api.state.required_params[expect_param[0]] = expect_param[1]
        spec = pipeline(http_source("items", api.url, http={"auth": auth}))
        good = ingest(spec, warehouse, env={"DUCKHERD_SECRET_API_TOKEN": secret})
        bad = ingest(spec, warehouse, env={"DUCKHERD_SECRET_API_TOKEN": secret + "-wrong"})
    assert good.ok, good.error
    assert not bad.ok
    assert bad.error is not None
    assert "HTTP 401" in bad.error
    assert secret not in bad.model_dump_json()


def test_a_missing_secret_names_the_env_var(tmp_path: Path) -> None:
    auth = {"type": "bearer", "secretRef": {"name": "api", "key": "token"}}
    spec = pipeline(http_source("items", "http://127.0.0.1:9/items", http={"auth": auth}))
    summary = ingest(spec, tmp_path / "warehouse.duckdb")
    assert not summary.ok
    assert summary.error is not None
    assert "DUCKHERD_SECRET_API_TOKEN" in summary.error


def test_the_demo_source_command_serves_on_the_given_address() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    duckherd = str(Path(sys.executable).parent / "duckherd")
    process = subprocess.Popen(
        [duckherd, "demo-source", "--host", "127.0.0.1", "--port", str(port), "--customers", "42"],
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline().decode()
        assert f"127.0.0.1:{port}/customers" in banner
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(
                    f"http://127.0.0.1:{port}/customers", params={"page": 5, "page_size": 10}
                )
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        body = response.json()
        assert (body["total"], body["page"], len(body["data"])) == (42, 5, 2)
        assert "Link" not in response.headers
        assert httpx.get(f"http://127.0.0.1:{port}/customers?page=0").status_code == 400
    finally:
        process.terminate()
        process.wait(timeout=10)
