"""The transform stage against a real DuckDB file with real dbt (dbt-core + dbt-duckdb)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import pytest
from dbt.contracts.project import Project
from mashumaro.jsonschema import build_json_schema

from duckherd.api import DataPipeline
from duckherd.contract import ENV_DBT_CONFIGMAP_DIR
from duckherd_jobs.context import StageContext
from duckherd_jobs.runner import run_stage
from duckherd_jobs.transform import prepare_project
from duckherd_jobs.transform.invocation import DbtInvocation, build_args, run_dbt
from duckherd_jobs.transform.project import flatten_project
from tests import pipelines

REPO = Path(__file__).resolve().parents[2]
DBT_PROJECT = REPO / "dbt"
AS_OF = {"as_of_date": "2025-01-01"}

# Rows as the ingest stage lands them from JSON: ISO strings, plus its own `_` columns.
CUSTOMERS = [
    # id, name, email, created_at, updated_at, revenue, orders, active
    (1, "Ada", "ADA@example.com", "2024-01-15T00:00:00Z", "2024-12-01T08:00:00Z", 1200.0, 3, True),
    (2, "Ben", "ben@example.com", "2024-12-20T00:00:00Z", "2024-12-21T00:00:00Z", 80.0, 1, True),
    (3, "Cy", "cy@example.com", "2022-12-31T23:30:00-01:00", "2024-06-01T00:00:00Z", 480.0, 6, 0),
]
# months_active: whole months from created_at to 2025-01-01, by hand. Customer 3 signed up at
# 2023-01-01T00:30Z (its offset honoured): 30 minutes short of 24 months.
EXPECTED_LTV = {1: (11, 1200.0 / 11), 2: (0, None), 3: (23, 480.0 / 23)}


def load_raw(warehouse: Path, rows: list[tuple[Any, ...]] = CUSTOMERS) -> None:
    with duckdb.connect(str(warehouse)) as connection:
        connection.execute("CREATE SCHEMA IF NOT EXISTS raw")
        connection.execute(
            """CREATE OR REPLACE TABLE raw.customers (
                customer_id BIGINT, name VARCHAR, email VARCHAR, country VARCHAR,
                segment VARCHAR, created_at VARCHAR, updated_at VARCHAR,
                total_revenue DOUBLE, orders_count BIGINT, is_active BOOLEAN,
                _duckherd_loaded_at TIMESTAMPTZ, _duckherd_run_id VARCHAR)"""
        )
        connection.executemany(
            "INSERT INTO raw.customers VALUES (?, ?, ?, 'DE', 'smb', ?, ?, ?, ?, ?, now(), 'r0')",
            [list(row) for row in rows],
        )
        # The project's second source (the example's orders): present, empty here.
        connection.execute(
            """CREATE OR REPLACE TABLE raw.orders (
                order_id BIGINT, customer_id BIGINT, ordered_at VARCHAR, status VARCHAR,
                order_total DOUBLE, _duckherd_loaded_at TIMESTAMPTZ, _duckherd_run_id VARCHAR)"""
        )


def context(
    tmp_path: Path,
    dbt: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    manifest_dir: Path | None = None,
    transform: bool = True,
) -> StageContext:
    spec: dict[str, Any] = {
        "sources": [{"name": "customers", "http": {"url": "http://127.0.0.1:9/customers"}}],
    }
    if transform:
        spec["transform"] = {"dbt": {"project": {"path": str(DBT_PROJECT)}, **(dbt or {})}}
    pipeline = pipelines.pipeline("customer-analytics", **spec)
    return StageContext(
        pipeline=pipeline,
        warehouse=tmp_path / "warehouse.duckdb",
        run_id="20250101t060000-abcdef",
        manifest_dir=manifest_dir or tmp_path,
        env=env if env is not None else {},
        lock_timeout_seconds=30,
    )


def query(warehouse: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def copy_project(tmp_path: Path) -> Path:
    destination = tmp_path / "project"
    shutil.copytree(DBT_PROJECT, destination, ignore=shutil.ignore_patterns("target", "logs"))
    return destination


def test_example_project_builds_the_mart_with_hand_computed_monthly_ltv(tmp_path: Path) -> None:
    ctx = context(tmp_path, {"vars": AS_OF})
    load_raw(ctx.warehouse)

    summary = run_stage("transform", ctx)

    assert summary.ok, summary.error
    assert summary.models == {
        "stg_salesforce__customers": "success",
        "customer_analytics": "success",
        "stg_salesforce__orders": "success",
        "orders": "success",
    }
    assert summary.tables["marts.customer_analytics"].rows == 3
    # dbt's graph of the build, named by the manifest (the lineage events read it).
    assert {(m.relation, tuple(m.inputs)) for m in summary.lineage} == {
        ("staging.stg_salesforce__customers", ("raw.customers",)),
        ("marts.customer_analytics", ("staging.stg_salesforce__customers",)),
        ("staging.stg_salesforce__orders", ("raw.orders",)),
        (
            "marts.orders",
            ("staging.stg_salesforce__customers", "staging.stg_salesforce__orders"),
        ),
    }
    rows = query(
        ctx.warehouse,
        "SELECT customer_id, months_active, monthly_ltv FROM marts.customer_analytics",
    )
    for customer_id, months_active, monthly_ltv in rows:
        expected_months, expected_ltv = EXPECTED_LTV[customer_id]
        assert months_active == expected_months
        assert monthly_ltv == pytest.approx(expected_ltv)
    staged = query(ctx.warehouse, "DESCRIBE staging.stg_salesforce__customers")
    names = [row[0] for row in staged]
    assert not [name for name in names if name.startswith("_")]
    assert ("email", "ada@example.com") in {
        ("email", row[0])
        for row in query(ctx.warehouse, "SELECT email FROM staging.stg_salesforce__customers")
    }
    recorded = query(ctx.warehouse, "SELECT stage, ok FROM _duckherd.runs")
    assert recorded == [("transform", True)]


def test_vars_reach_the_models(tmp_path: Path) -> None:
    ctx = context(tmp_path, {"vars": {"as_of_date": "2024-02-15"}})
    load_raw(ctx.warehouse)

    assert run_stage("transform", ctx).ok
    months = dict(
        query(ctx.warehouse, "SELECT customer_id, months_active FROM marts.customer_analytics")
    )
    assert months[1] == 1  # 2024-01-15 → 2024-02-15, not the 11 months of AS_OF


@pytest.mark.parametrize(
    "selection",
    [
        {"select": ["stg_salesforce__customers"]},
        {"exclude": ["customer_analytics", "stg_salesforce__orders+"]},
    ],
    ids=["select", "exclude"],
)
def test_select_and_exclude_limit_what_is_built(
    tmp_path: Path, selection: dict[str, list[str]]
) -> None:
    ctx = context(tmp_path, {"vars": AS_OF, **selection})
    load_raw(ctx.warehouse)

    summary = run_stage("transform", ctx)

    assert summary.ok, summary.error
    assert summary.models == {"stg_salesforce__customers": "success"}
    assert summary.tables == {}
    built = query(
        ctx.warehouse,
        "SELECT table_schema || '.' || table_name FROM information_schema.tables "
        "WHERE table_schema IN ('staging', 'marts')",
    )
    assert built == [("staging.stg_salesforce__customers",)]


def test_a_failing_model_fails_the_stage_and_leaves_the_mart_as_it_was(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    ctx = context(tmp_path, {"project": {"path": "project"}, "vars": AS_OF})
    load_raw(ctx.warehouse)
    assert run_stage("transform", ctx).ok
    before = query(ctx.warehouse, "SELECT * FROM marts.customer_analytics ORDER BY 1")
    mart = project / "models" / "marts" / "customer_analytics.sql"
    mart.write_text(mart.read_text().replace("orders_count,", "orders_count, no_such_column,", 1))
    load_raw(ctx.warehouse, [*CUSTOMERS, (4, "Dee", "d@example.com", *CUSTOMERS[0][3:])])

    summary = run_stage("transform", ctx)

    assert not summary.ok
    assert summary.models["customer_analytics"] == "error"
    assert summary.models["stg_salesforce__customers"] == "success"
    assert summary.error is not None
    assert "customer_analytics" in summary.error
    assert "no_such_column" in summary.error
    assert query(ctx.warehouse, "SELECT * FROM marts.customer_analytics ORDER BY 1") == before
    assert query(ctx.warehouse, "SELECT stage, ok FROM _duckherd.runs ORDER BY started_at") == [
        ("transform", True),
        ("transform", False),
    ]


def test_a_project_that_does_not_compile_fails_naming_the_model(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    ctx = context(tmp_path, {"project": {"path": "project"}})
    load_raw(ctx.warehouse)
    mart = project / "models" / "marts" / "customer_analytics.sql"
    mart.write_text(mart.read_text().replace("ref('stg_salesforce__customers')", "ref('nope')"))

    summary = run_stage("transform", ctx)

    assert not summary.ok
    assert summary.error is not None
    assert "customer_analytics" in summary.error
    assert "nope" in summary.error


def test_a_failing_data_test_blocks_the_mart(tmp_path: Path) -> None:
    ctx = context(tmp_path, {"vars": AS_OF})
    load_raw(ctx.warehouse)
    assert run_stage("transform", ctx).ok
    load_raw(ctx.warehouse, [*CUSTOMERS, CUSTOMERS[0]])

    summary = run_stage("transform", ctx)

    assert not summary.ok
    assert summary.error is not None
    assert "unique_stg_salesforce__customers_customer_id" in summary.error
    assert summary.models["customer_analytics"] == "skipped"
    assert query(ctx.warehouse, "SELECT count(*) FROM marts.customer_analytics") == [(3,)]
    # The failed test is an error-severity result of the run (status.quality, publish gate).
    assert summary.checks is not None
    failed = [r for r in summary.checks.results if not r.success]
    assert [(r.name, r.severity, r.observed) for r in failed] == [
        ("dbt:unique_stg_salesforce__customers_customer_id", "error", "1 failing row(s)")
    ]
    assert summary.checks.failed == 1
    recorded = query(
        ctx.warehouse,
        "SELECT run_id, table_name, severity, success FROM _duckherd.checks "
        "WHERE expectation = 'dbt_test' AND NOT success",
    )
    assert recorded == [(ctx.run_id, "staging.stg_salesforce__customers", "error", False)]


def test_dbt_tests_count_in_the_check_stage_of_the_same_run(tmp_path: Path) -> None:
    """A dbt test at `severity: warn` fails without failing the transform; the check stage of
    the run counts it beside its own expectations."""
    project = copy_project(tmp_path)
    for models in (project / "models").rglob("*.yml"):
        warn = "          - unique:\n              config:\n                severity: warn\n"
        models.write_text(models.read_text().replace("          - unique\n", warn))
    ctx = context(tmp_path, {"vars": AS_OF, "project": {"path": str(project)}})
    load_raw(ctx.warehouse, [*CUSTOMERS, CUSTOMERS[0]])

    transformed = run_stage("transform", ctx)

    assert transformed.ok, transformed.error
    assert transformed.checks is not None
    assert (transformed.checks.failed, transformed.checks.warned) == (0, 2)  # staging and mart
    checks = [
        {
            "table": "staging.stg_salesforce__customers",
            "expectation": "expect_column_to_exist",
            "kwargs": {"column": "customer_id"},
        }
    ]
    spec = ctx.pipeline.model_dump(mode="json", exclude_none=True)
    spec["spec"]["quality"] = {"checks": checks}
    checked = run_stage("check", replace(ctx, pipeline=DataPipeline.model_validate(spec)))
    assert checked.checks is not None
    by_name = {r.name: r for r in checked.checks.results}
    warned = by_name["dbt:unique_stg_salesforce__customers_customer_id"]
    assert (warned.success, warned.severity, warned.observed) == (False, "warn", "1 failing row(s)")
    assert by_name["staging.stg_salesforce__customers.customer_id:expect_column_to_exist"].success
    assert (checked.checks.warned, checked.checks.failed) == (2, 0)
    assert checked.ok, checked.error
    assert checked.checks.passed + checked.checks.failed + checked.checks.warned == len(by_name)


def write_configmap_mount(mount: Path, data: Mapping[str, str]) -> None:
    """The layout the kubelet gives a ConfigMap volume: keys are links into `..data`."""
    timestamped = mount / "..2025_01_01_06_00_00.000000001"
    timestamped.mkdir(parents=True)
    for key, text in data.items():
        (timestamped / key).write_text(text)
    (mount / "..data").symlink_to(timestamped.name)
    for key in data:
        (mount / key).symlink_to(Path("..data") / key)


def test_a_flat_configmap_project_is_rebuilt_and_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "pod-tmp"  # a pod's /tmp: where the tree is rebuilt
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    mount = tmp_path / "mount"
    data = flatten_project(DBT_PROJECT)
    assert "models__staging__stg_salesforce__customers.sql" in data
    write_configmap_mount(mount, data)
    ctx = context(tmp_path, {"vars": AS_OF}, env={ENV_DBT_CONFIGMAP_DIR: str(mount)})
    ctx.pipeline.spec.transform.dbt.project.path = None  # type: ignore[union-attr]
    ctx.pipeline.spec.transform.dbt.project.configMap = "customer-analytics-dbt"  # type: ignore[union-attr]
    load_raw(ctx.warehouse)

    summary = run_stage("transform", ctx)

    assert summary.ok, summary.error
    assert summary.tables["marts.customer_analytics"].rows == 3
    (rebuilt,) = scratch.glob("duckherd-dbt-project-*")
    assert (rebuilt / "models" / "staging" / "stg_salesforce__customers.sql").is_file()


def test_a_configmap_that_is_not_mounted_is_named(tmp_path: Path) -> None:
    ctx = context(tmp_path, env={ENV_DBT_CONFIGMAP_DIR: str(tmp_path / "absent")})
    ctx.pipeline.spec.transform.dbt.project.path = None  # type: ignore[union-attr]
    ctx.pipeline.spec.transform.dbt.project.configMap = "customer-analytics-dbt"  # type: ignore[union-attr]
    load_raw(ctx.warehouse)

    summary = run_stage("transform", ctx)

    assert not summary.ok
    assert summary.error is not None
    assert "spec.transform.dbt.project.configMap 'customer-analytics-dbt'" in summary.error


def test_a_missing_project_path_is_named(tmp_path: Path) -> None:
    ctx = context(tmp_path, {"project": {"path": "nowhere"}})
    load_raw(ctx.warehouse)

    summary = run_stage("transform", ctx)

    assert not summary.ok
    assert summary.error is not None
    assert "spec.transform.dbt.project.path" in summary.error
    assert "dbt_project.yml" in summary.error


def test_the_default_project_comes_from_the_environment_or_the_repository(
    tmp_path: Path,
) -> None:
    from_env = context(tmp_path, {"vars": AS_OF}, env={"DUCKHERD_DBT_PROJECT": str(DBT_PROJECT)})
    from_env.pipeline.spec.transform.dbt.project.path = None  # type: ignore[union-attr]
    load_raw(from_env.warehouse)
    assert run_stage("transform", from_env).ok

    from_repo = context(
        tmp_path, {"vars": AS_OF}, manifest_dir=REPO / "examples" / "customer-analytics"
    )
    from_repo.pipeline.spec.transform.dbt.project.path = None  # type: ignore[union-attr]
    assert run_stage("transform", from_repo).ok


def test_a_pipeline_without_transform_fails_naming_the_field(tmp_path: Path) -> None:
    ctx = context(tmp_path, transform=False)

    summary = run_stage("transform", ctx)

    assert not summary.ok
    assert summary.error is not None
    assert "spec.transform" in summary.error


def test_a_prepared_project_skips_parsing_until_its_sources_change(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    prepare_project(project)
    prepared_file = json.loads((project / "target" / "duckherd-prepared.json").read_text())
    assert prepared_file["fingerprint"]
    # dbt's start-up schemas, recorded at prepare time, are the ones mashumaro builds.
    schemas = prepared_file["jsonSchemas"]
    assert schemas["dbt.contracts.project.Project"] == build_json_schema(Project).to_dict()
    warehouse = tmp_path / "warehouse.duckdb"
    load_raw(warehouse)
    workdir = tmp_path / "work"

    prepared = run_dbt(
        DbtInvocation(project=project, warehouse=warehouse, workdir=workdir / "1"),
        lock_timeout_seconds=30,
    )
    assert prepared.success, prepared.error
    assert prepared.manifest == "prepared"

    mart = project / "models" / "marts" / "customer_analytics.sql"
    mart.write_text(mart.read_text().replace("customer_id,", "customer_id, 42 as marker,", 1))
    changed = run_dbt(
        DbtInvocation(project=project, warehouse=warehouse, workdir=workdir / "2"),
        lock_timeout_seconds=30,
    )
    assert changed.success, changed.error
    assert changed.manifest == "parsed"
    assert query(warehouse, "SELECT DISTINCT marker FROM marts.customer_analytics") == [(42,)]

    with_vars = run_dbt(
        DbtInvocation(project=project, warehouse=warehouse, workdir=workdir / "3", vars=AS_OF),
        lock_timeout_seconds=30,
    )
    assert with_vars.success
    assert with_vars.manifest == "parsed"


def test_a_manifest_parsed_at_run_time_serves_the_next_runs(tmp_path: Path) -> None:
    project = copy_project(tmp_path)  # not prepared: a volume or ConfigMap project
    warehouse = tmp_path / "warehouse.duckdb"
    cache = tmp_path / "manifests"
    load_raw(warehouse)
    runs = iter(range(100))

    def build(**settings: Any) -> str:
        outcome = run_dbt(
            DbtInvocation(
                project=project,
                warehouse=warehouse,
                workdir=tmp_path / f"work-{next(runs)}",
                manifest_cache=cache,
                **settings,
            ),
            lock_timeout_seconds=30,
        )
        assert outcome.success, outcome.error
        return outcome.manifest

    assert [build(), build()] == ["parsed", "cached"]
    assert [build(vars=AS_OF), build(vars=AS_OF), build()] == ["parsed", "cached", "cached"]
    cached_schemas = [json.loads(p.read_text()) for p in cache.glob("*.json")]
    assert all("dbt.contracts.project.Project" in schemas for schemas in cached_schemas)

    mart = project / "models" / "marts" / "customer_analytics.sql"
    mart.write_text(mart.read_text().replace("customer_id,", "customer_id, 7 as marker,", 1))
    assert [build(), build()] == ["parsed", "cached"]
    assert query(warehouse, "SELECT DISTINCT marker FROM marts.customer_analytics") == [(7,)]


HOLD_LOCK = (
    "import duckdb, sys\n"
    "connection = duckdb.connect(sys.argv[1])\n"
    "print('locked', flush=True)\n"
    "sys.stdin.readline()\n"
)


@contextmanager
def warehouse_held(warehouse: Path) -> Iterator[Callable[[], None]]:
    """Another process holds the DuckDB file lock until `release()` (or the block's end)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(warehouse)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None
    assert holder.stdout is not None
    stdin = holder.stdin

    def release() -> None:
        if not stdin.closed:
            stdin.close()

    try:
        assert holder.stdout.readline().strip() == "locked"
        yield release
    finally:
        release()
        holder.wait(timeout=60)
        holder.stdout.close()


class ReleaseWhenLogged(logging.Handler):
    """Calls `release` the first time a record contains `text`."""

    def __init__(self, text: str, release: Callable[[], None]) -> None:
        super().__init__()
        self.text, self.fired = text, False
        self._release = release

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage() and not self.fired:
            self.fired = True
            self._release()


def test_the_stage_waits_for_a_warehouse_another_process_holds(tmp_path: Path) -> None:
    ctx = context(tmp_path, {"vars": AS_OF})
    load_raw(ctx.warehouse)

    with warehouse_held(ctx.warehouse) as release:
        timer = threading.Timer(1.5, release)
        timer.start()
        summary = run_stage("transform", ctx)
        timer.join()

    assert summary.ok, summary.error


def test_dbt_retries_when_another_process_takes_the_lock_first(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    load_raw(warehouse)
    logger = logging.getLogger("duckherd.jobs.transform")

    with warehouse_held(warehouse) as release:
        handler = ReleaseWhenLogged("is locked by another process: waiting", release)
        logger.addHandler(handler)
        previous_level = logger.level
        logger.setLevel(logging.INFO)
        try:
            outcome = run_dbt(
                DbtInvocation(project=DBT_PROJECT, warehouse=warehouse, workdir=tmp_path / "w"),
                lock_timeout_seconds=60,
            )
        finally:
            logger.removeHandler(handler)
            logger.setLevel(previous_level)

    assert handler.fired  # dbt met the lock, waited, and ran once it was released
    assert outcome.success, outcome.error


def test_a_lock_held_past_the_timeout_fails_naming_the_file(tmp_path: Path) -> None:
    ctx = replace(context(tmp_path, {"vars": AS_OF}), lock_timeout_seconds=0.5)
    load_raw(ctx.warehouse)

    with warehouse_held(ctx.warehouse):
        summary = run_stage("transform", ctx)

    assert not summary.ok
    assert summary.error is not None
    assert str(ctx.warehouse) in summary.error
    assert "locked by another process" in summary.error


def test_dbt_arguments_carry_the_spec(tmp_path: Path) -> None:
    invocation = DbtInvocation(
        project=DBT_PROJECT,
        warehouse=tmp_path / "w.duckdb",
        workdir=tmp_path,
        select=["tag:daily", "stg_salesforce__customers+"],
        exclude=["customer_analytics"],
        vars={"as_of_date": "2025-01-01"},
        full_refresh=True,
    )

    args = build_args(invocation, tmp_path / "profile")

    def values(flag: str) -> list[str]:
        return [args[i + 1] for i, arg in enumerate(args) if arg == flag]

    assert args[0] == "build"
    assert values("--select") == ["tag:daily", "stg_salesforce__customers+"]
    assert values("--exclude") == ["customer_analytics"]
    assert [json.loads(v) for v in values("--vars")] == [{"as_of_date": "2025-01-01"}]
    assert "--full-refresh" in args
    # Nothing is written next to the project (a read-only image or ConfigMap).
    assert values("--target-path") == [str(tmp_path / "target")]
    assert values("--log-path") == [str(tmp_path / "logs")]
