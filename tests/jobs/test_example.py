"""The customer-analytics example: its manifest, the URL override, its dbt project on the
demo source's data (real HTTP on loopback, real DuckDB, real dbt)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from duckherd.api import DataPipeline
from duckherd_jobs.context import StageContext
from duckherd_jobs.demo_source import SOURCES, DemoSource
from duckherd_jobs.runner import (
    ManifestError,
    apply_source_url_overrides,
    load_manifest,
    run_stage,
)
from tests.dashboard.browser import DashboardPage, chromium, running
from tests.services import free_port, running_shared_servers

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "customer-analytics"
MANIFEST = EXAMPLE / "pipeline.yaml"
YEARS_OF_HISTORY = 5  # the demo source's customers signed up within the last five years


def example() -> DataPipeline:
    return load_manifest(MANIFEST)


def test_the_example_is_the_daily_customer_pipeline() -> None:
    pipeline = example()
    spec = pipeline.spec

    assert pipeline.metadata.name == "customer-analytics"
    assert spec.schedule == "0 6 * * *"
    assert spec.stages() == ["ingest", "transform", "check", "publish"]
    targets = {(p.table, "redis" if p.redis else "postgres") for p in spec.publish}
    assert targets == {
        ("marts.customer_analytics", "redis"),
        ("marts.customer_analytics", "postgres"),
    }
    assert spec.freshness is not None
    assert (spec.freshness.warnAfter, spec.freshness.errorAfter) == ("26h", "48h")
    source, orders = spec.sources
    assert source.name == "customers"
    assert source.writeDisposition == "merge"
    assert source.primaryKey == ["customer_id"]
    assert source.incremental is not None
    assert source.incremental.cursorField == "updated_at"
    assert source.http is not None
    assert source.http.url == "http://duckherd-demo-source:8765/customers"
    assert source.http.incrementalParam == "updated_since"
    assert source.http.pagination.type == "page"
    assert source.http.pagination.totalPath == "total"
    assert (orders.name, orders.writeDisposition, orders.primaryKey) == (
        "orders",
        "merge",
        ["order_id"],
    )
    assert orders.incremental is not None
    assert orders.incremental.cursorField == "ordered_at"
    assert orders.http is not None
    assert orders.http.url == "http://duckherd-demo-source:8765/orders"
    assert [(m.name, m.table, m.expression) for m in spec.metrics] == [
        ("customer_count", "marts.customer_analytics", "count(*)"),
        ("average_monthly_ltv", "marts.customer_analytics", "avg(monthly_ltv)"),
        ("total_monthly_ltv", "marts.customer_analytics", "sum(monthly_ltv)"),
    ]
    assert spec.quality is not None
    expectations = {(c.expectation, c.kwargs.get("column")) for c in spec.quality.checks}
    assert expectations == {
        ("expect_column_values_to_not_be_null", "customer_id"),
        ("expect_column_values_to_be_unique", "customer_id"),
        ("expect_column_values_to_be_between", "total_revenue"),
        ("expect_column_max_to_be_recent", "updated_at"),
        ("expect_table_row_count_change_to_be_within", None),
        ("expect_column_to_exist", "customer_id"),
        ("expect_column_drift_to_be_within", "monthly_ltv"),
        ("expect_column_values_to_exist_in_table", "customer_id"),
    }
    assert {c.table for c in spec.quality.checks} == {
        "marts.customer_analytics",
        "marts.orders",
        "staging.stg_salesforce__customers",
    }


def test_an_env_var_points_the_source_at_a_local_server() -> None:
    pipeline = apply_source_url_overrides(
        example(), {"DUCKHERD_SOURCE_URL_CUSTOMERS": "http://127.0.0.1:4321/customers"}
    )

    assert pipeline.spec.sources[0].http is not None
    assert pipeline.spec.sources[0].http.url == "http://127.0.0.1:4321/customers"


def test_a_bad_override_is_named_without_echoing_its_value() -> None:
    with pytest.raises(ManifestError, match="DUCKHERD_SOURCE_URL_CUSTOMERS") as raised:
        apply_source_url_overrides(
            example(), {"DUCKHERD_SOURCE_URL_CUSTOMERS": "ftp://user:hunter2@host/x"}
        )
    assert "hunter2" not in str(raised.value)


def test_load_manifest_applies_the_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUCKHERD_SOURCE_URL_CUSTOMERS", "http://127.0.0.1:4321/customers")

    source = load_manifest(MANIFEST).spec.sources[0]

    assert source.http is not None
    assert source.http.url == "http://127.0.0.1:4321/customers"


def land_demo_source(warehouse: Path, customers: int) -> dict[str, list[dict[str, Any]]]:
    """What ingest lands: every record of the demo API's customers and orders in raw.<name>
    (plus a `_` column)."""
    landed: dict[str, list[dict[str, Any]]] = {}
    with DemoSource(customers) as url, duckdb.connect(str(warehouse)) as connection:
        connection.execute("CREATE SCHEMA IF NOT EXISTS raw")
        for name in SOURCES:
            records: list[dict[str, Any]] = []
            page = 1
            while True:
                with urllib.request.urlopen(f"{url}/{name}?page={page}&page_size=500") as answer:
                    body = json.load(answer)
                records += body["data"]
                if page * body["page_size"] >= body["total"]:
                    break
                page += 1
            file = warehouse.parent / f"{name}.json"
            file.write_text(json.dumps(records))
            connection.execute(
                f"CREATE TABLE raw.{name} AS SELECT *, now() AS _duckherd_loaded_at "
                "FROM read_json(?)",
                [str(file)],
            )
            landed[name] = records
    return landed


def test_the_example_dbt_project_models_the_demo_source(tmp_path: Path) -> None:
    warehouse = tmp_path / "customer-analytics.duckdb"
    landed = land_demo_source(warehouse, 700)
    records = landed["customers"]
    ctx = StageContext(
        pipeline=example(),
        warehouse=warehouse,
        run_id="20250101t060000-000001",
        manifest_dir=EXAMPLE,
        env={},  # the project is found the way local mode finds it: the repository's dbt/
        lock_timeout_seconds=30,
    )

    summary = run_stage("transform", ctx)

    assert summary.ok, summary.error
    assert summary.tables["marts.customer_analytics"].rows == len(records) == 700
    assert summary.tables["marts.orders"].rows == len(landed["orders"])
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        rows = connection.execute(
            "SELECT customer_id, total_revenue, months_active, monthly_ltv "
            "FROM marts.customer_analytics"
        ).fetchall()
        columns = {
            relation: [r[0] for r in connection.execute(f"DESCRIBE {relation}").fetchall()]
            for relation in (
                "staging.stg_salesforce__customers",
                "marts.customer_analytics",
                "staging.stg_salesforce__orders",
                "marts.orders",
            )
        }
        orders = connection.execute(
            "SELECT order_id, customer_id, order_total, customer_segment FROM marts.orders"
        ).fetchall()
    staged = columns["staging.stg_salesforce__customers"]
    revenue = {r["customer_id"]: r["total_revenue"] for r in records}
    for customer_id, total_revenue, months_active, monthly_ltv in rows:
        assert float(total_revenue) == pytest.approx(revenue[customer_id])
        assert 0 <= months_active <= 12 * YEARS_OF_HISTORY
        if months_active == 0:
            assert monthly_ltv is None
        else:
            assert monthly_ltv == pytest.approx(revenue[customer_id] / months_active)
    assert sorted(r[0] for r in rows) == sorted(revenue)
    # marts.orders: every order once, each with its customer's segment (none is orphaned).
    served = {o["order_id"]: o for o in landed["orders"]}
    assert sorted(o[0] for o in orders) == sorted(served) and len(served) > 0
    segments = {r["customer_id"]: r["segment"] for r in records}
    for order_id, customer_id, order_total, segment in orders:
        assert customer_id == served[order_id]["customer_id"]
        assert float(order_total) == pytest.approx(served[order_id]["order_total"])
        assert segment == segments[customer_id]
    assert "_duckherd_loaded_at" not in staged
    described = described_columns(REPO / "dbt" / "models")
    for relation, names in columns.items():
        model = relation.partition(".")[2]
        assert list(described[model]) == names, f"{model}: the YAML describes other columns"
        assert all(described[model].values()), f"{model}: a column has no description"


def described_columns(models: Path) -> dict[str, dict[str, str]]:
    """model → column → description, from the project's YAML property files."""
    described: dict[str, dict[str, str]] = {}
    for path in sorted(models.rglob("*.yml")):
        for model in yaml.safe_load(path.read_text()).get("models", []):
            described[model["name"]] = {
                column["name"]: str(column.get("description") or "").strip()
                for column in model.get("columns", [])
            }
    return described


@dataclass(frozen=True)
class DemoRuns:
    warehouse: Path
    env: dict[str, str]  # what `make demo` and `make dashboard` were run with
    outputs: list[str]


@pytest.fixture(scope="module")
def demo_runs() -> Iterator[DemoRuns]:
    """hack/demo.sh (what `make demo` runs), twice, into a warehouse and serving dir of its own.

    The serving dir (Redis's and PostgreSQL's data) is under /tmp, not pytest's tmp dir: under
    root PostgreSQL runs as the `postgres` user, who cannot reach pytest's private directory.
    """
    base = Path(tempfile.mkdtemp(prefix="duckherd-demo-"))
    base.chmod(0o755)
    warehouse = base / "customer-analytics.duckdb"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DUCKHERD_SOURCE_URL_", "DUCKHERD_DBT_", "DASHBOARD_"))
    }
    env.update(
        WAREHOUSE=str(warehouse), SERVING_DIR=str(base / "serving"), CUSTOMERS="600", COLUMNS="200"
    )
    outputs = []
    for _ in range(2):
        done = subprocess.run(
            [str(REPO / "hack" / "demo.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        outputs.append(done.stdout)
    yield DemoRuns(warehouse, env, outputs)
    shutil.rmtree(base, ignore_errors=True)


def test_make_demo_runs_the_example_end_to_end_and_again_incrementally(
    demo_runs: DemoRuns,
) -> None:
    """Demo API, ingest, dbt, checks and publish to local Redis and PostgreSQL, in local mode."""
    for output in demo_runs.outputs:
        assert "postgres: analytics.customer_analytics -> 600 rows" in output
        assert "-> 600 rows, run" in output  # the Redis meta key of the published mart
        assert "look at it: make dashboard" in output

    with duckdb.connect(str(demo_runs.warehouse), read_only=True) as connection:
        runs = connection.execute(
            "SELECT run_id, stage, ok FROM _duckherd.runs ORDER BY started_at"
        ).fetchall()
        marts = connection.execute("SELECT count(*) FROM marts.customer_analytics").fetchone()
        checks = connection.execute(
            "SELECT count(*), count(*) FILTER (WHERE success) FROM _duckherd.checks"
            " WHERE expectation <> 'dbt_test'"
        ).fetchone()
        dbt_tests = connection.execute(
            "SELECT run_id, count(*), count(*) FILTER (WHERE success) FROM _duckherd.checks"
            " WHERE expectation = 'dbt_test' GROUP BY run_id"
        ).fetchall()
        kpis = connection.execute(
            "SELECT run_id, name, value, error FROM _duckherd.kpis ORDER BY computed_at, name"
        ).fetchall()
        by_hand = connection.execute(
            "SELECT count(*), avg(monthly_ltv), sum(monthly_ltv) FROM marts.customer_analytics"
        ).fetchall()[0]
    assert [(stage, ok) for _, stage, ok in runs] == [
        ("ingest", True),
        ("transform", True),
        ("check", True),
        ("publish", True),
    ] * 2
    assert len({run_id for run_id, _, _ in runs}) == 2
    assert marts == (600,)
    assert checks == (16, 16)  # 8 checks, twice
    # The transform records the dbt tests it ran beside the checks: the same ones each run,
    # all passing on the demo's data.
    assert len(dbt_tests) == 2
    assert {(total, passed) for _, total, passed in dbt_tests} == {(dbt_tests[0][1],) * 2}
    assert dbt_tests[0][1] > 0
    # The example's KPIs, computed by each run's check stage, equal the same SQL by hand.
    assert len(kpis) == 6 and all(error is None for *_, error in kpis)
    latest = {name: value for run_id, name, value, _ in kpis if run_id == runs[-1][0]}
    assert latest["customer_count"] == by_hand[0] == 600
    assert latest["average_monthly_ltv"] == pytest.approx(float(by_hand[1]))
    assert latest["total_monthly_ltv"] == pytest.approx(float(by_hand[2]))
    kpi_lines = [line.split() for line in demo_runs.outputs[-1].splitlines()]
    assert ["customer_count", "marts.customer_analytics", "600"] in kpi_lines
    assert [
        "average_monthly_ltv",
        "marts.customer_analytics",
        f"{float(by_hand[1]):,.4f}",
    ] in kpi_lines
    # Redis and PostgreSQL stopped with the demo; their data stayed for `make dashboard`.
    assert running_shared_servers(Path(demo_runs.env["SERVING_DIR"])) is None


def test_make_dashboard_shows_the_demos_numbers_in_a_browser(demo_runs: DemoRuns) -> None:
    """`make demo` then `make dashboard` (hack/dashboard.sh): the servers restart on the data
    the demo left, and the page shows the demo's mart."""
    with duckdb.connect(str(demo_runs.warehouse), read_only=True) as connection:
        customers, average, run_id = connection.execute(
            "SELECT count(*), avg(monthly_ltv), (SELECT max(run_id) FROM _duckherd.runs) "
            "FROM marts.customer_analytics"
        ).fetchall()[0]
    port = free_port()
    env = {**demo_runs.env, "PORT": str(port)}
    log = demo_runs.warehouse.with_name("dashboard.log")
    url = f"http://127.0.0.1:{port}"

    with running([str(REPO / "hack" / "dashboard.sh")], env, url, log), chromium() as driver:
        page = DashboardPage(driver)
        page.open(url)
        totals = page.rendered_totals()
        assert totals["Customers"] == f"{customers:,}" == "600"
        assert totals["Average monthly LTV"] == f"{average:,.2f}"
        assert f"run {run_id}" in page.banner()
        assert f"dashboard: {url}" in log.read_text()
    assert running_shared_servers(Path(demo_runs.env["SERVING_DIR"])) is None
