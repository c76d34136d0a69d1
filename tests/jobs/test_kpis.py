"""Business KPIs in the check stage, on a real DuckDB warehouse: DuckDB's verdict on each
expression, values equal to an independent SQL computation, one query per table, history in
`_duckherd.kpis`, and the read-only connection that refuses to write even when validation is
bypassed. Docs: docs/kpis.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from duckherd.api import DataPipeline, Metric
from duckherd.summary import StageSummary
from duckherd_jobs.context import StageContext
from duckherd_jobs.kpis import (
    KpiConfigError,
    PlannedKpi,
    compute_kpis,
    plan_kpis,
    read_only_warehouse,
    table_query,
)
from duckherd_jobs.runner import run_stage
from tests import pipelines
from tests.jobs.check_support import make_warehouse

DUCKHERD = Path(sys.executable).with_name("duckherd")
SOURCES = [{"name": "customers", "file": {"path": "x.csv", "format": "csv"}}]
METRICS = [
    {"name": "customer_count", "help": "Customers", "table": "customers",
     "expression": "count(*)"},
    {"name": "average_revenue", "help": "Average revenue", "table": "marts.customers",
     "expression": "avg(revenue)"},
    {"name": "total_revenue", "help": "Total revenue", "table": "customers",
     "expression": "sum(revenue)"},
    {"name": "active_share", "help": "Share of active customers", "table": "customers",
     "expression": "count(*) FILTER (WHERE status = 'active') / count(*)"},
    {"name": "distinct_segments", "help": "Segments", "table": "customers",
     "expression": "count(DISTINCT segment)"},
]  # fmt: skip
# The same numbers, computed by hand.
INDEPENDENT = """
SELECT count(*), avg(revenue), sum(revenue),
       count(*) FILTER (WHERE status = 'active') / count(*), count(DISTINCT segment)
FROM marts.customers
"""


def pipeline(metrics: list[dict[str, Any]], **spec: Any) -> DataPipeline:
    return pipelines.pipeline("shop", "default", sources=SOURCES, metrics=metrics, **spec)


def run_check(warehouse: Path, metrics: list[dict[str, Any]], **spec: Any) -> StageSummary:
    ctx = StageContext(
        pipeline=pipeline(metrics, **spec),
        warehouse=warehouse,
        run_id="r1",
        env={},
        lock_timeout_seconds=30,
    )
    return run_stage("check", ctx)


def metrics(*expressions: str, table: str = "customers") -> list[Metric]:
    """KPIs as the API would hold them, without the API's own check of the shape: DuckDB's
    verdict is tested on its own."""
    return [
        Metric.model_construct(name=f"kpi_{i}", help="h", table=table, expression=e)
        for i, e in enumerate(expressions)
    ]


def test_values_equal_an_independent_computation(tmp_path: Path) -> None:
    warehouse = make_warehouse(tmp_path / "w.duckdb")
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        expected = connection.execute(INDEPENDENT).fetchall()[0]

    summary = run_check(warehouse, METRICS)

    assert summary.ok, summary.error
    assert summary.checks is None  # KPIs alone: no verdict of checks to report
    assert [k.name for k in summary.kpis] == [m["name"] for m in METRICS]
    assert [k.table for k in summary.kpis] == ["marts.customers"] * len(METRICS)
    assert [k.value for k in summary.kpis] == [pytest.approx(float(v)) for v in expected]
    assert all(k.error is None for k in summary.kpis)
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        history = connection.execute(
            "SELECT run_id, name, table_name, expression, value, error FROM _duckherd.kpis"
        ).fetchall()
    assert [(r[0], r[1], r[2], r[3]) for r in history] == [
        ("r1", m["name"], "marts.customers", m["expression"]) for m in METRICS
    ]
    assert [r[4] for r in history] == [k.value for k in summary.kpis]


def test_kpis_run_beside_checks_and_a_failed_check_does_not_hide_them(tmp_path: Path) -> None:
    warehouse = make_warehouse(tmp_path / "w.duckdb")
    failing = {
        "table": "customers",
        "expectation": "expect_column_values_to_not_be_null",
        "kwargs": {"column": "email"},
    }
    summary = run_check(warehouse, METRICS[:1], quality={"checks": [failing]})
    assert not summary.ok and summary.checks is not None and summary.checks.failed == 1
    assert summary.kpis[0].value == 200


def test_all_kpis_of_a_table_are_one_select_built_from_the_syntax_trees() -> None:
    planned = plan_kpis(metrics("count(*)", "avg(revenue)", "sum(x) FILTER (WHERE y > 1)"))
    with duckdb.connect() as connection:
        sql = table_query(connection, "marts.customers", [k.tree for k in planned])
    assert sql == (
        "SELECT count_star() AS k0, avg(revenue) AS k1, "
        "sum(x) FILTER (WHERE (y > 1)) AS k2 FROM marts.customers"
    )
    assert [k.table for k in planned] == ["marts.customers"] * 3


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("revenue", "column revenue must be inside an aggregate, e.g. avg(revenue)"),
        ("avg(revenue) + months_active", "column months_active must be inside an aggregate"),
        ("42", "must aggregate the table: use an aggregate such as count(*)"),
        ("sum(avg(revenue))", "aggregate avg inside another aggregate is not allowed"),
        ("max(nextval('marts.seq'))", "function nextval is not allowed: it changes state"),
        ("sum(setseed(0.5))", "function setseed is not allowed"),
        ("max(current_setting('threads'))", "function current_setting is not allowed"),
        ("count(read_text('/etc/passwd'))", "table function read_text is not allowed"),
        ("avg(no_such_function(revenue))", "unknown function no_such_function"),
        ("avg(main.abs(revenue))", "qualified function names are not allowed"),
        ("avg(customers.revenue)", "qualified column names are not allowed"),
        ("avg(?)", "parameters are not allowed"),
        ("count(COLUMNS(*))", "`*` is only allowed as count(*)"),
        ("avg(revenue) IN (SELECT 1)", "subqueries are not allowed"),
        ("sum(revenue) OVER ()", "window functions are not allowed"),
        ("count(*) AS n", "an alias is not allowed"),
        ("count(*); DROP TABLE marts.customers", "one expression only: it holds 2 statements"),
        ("count(*) FROM marts.other", "must be one expression"),
        ("avg(", "not valid SQL: Parser Error: syntax error"),
    ],
)
def test_duckdb_refuses_what_is_not_a_read_only_aggregate(expression: str, message: str) -> None:
    good, bad = metrics("count(*)", expression)
    with pytest.raises(KpiConfigError) as refused:
        plan_kpis([good, bad])
    assert str(refused.value).startswith(f"spec.metrics[1].expression: {message}"), refused.value
    assert "\n" not in str(refused.value)


def test_a_refused_expression_fails_the_stage_before_any_work(tmp_path: Path) -> None:
    warehouse = make_warehouse(tmp_path / "w.duckdb")
    bad = {**METRICS[1], "expression": "avg(revenue) + months_active"}
    summary = run_check(warehouse, [METRICS[0], bad])
    assert not summary.ok
    assert summary.error == (
        "spec.metrics[1].expression: column months_active must be inside an aggregate, "
        "e.g. avg(months_active)"
    )
    assert summary.kpis == []
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM _duckherd.kpis").fetchall() == [(0,)]


def test_a_missing_table_or_column_fails_the_stage_and_the_others_still_count(
    tmp_path: Path,
) -> None:
    warehouse = make_warehouse(tmp_path / "w.duckdb")
    declared = [
        METRICS[0],
        {**METRICS[1], "expression": "avg(no_such_column)"},
        {"name": "orders", "help": "Orders", "table": "orders", "expression": "count(*)"},
        {"name": "last_update", "help": "x", "table": "customers", "expression": "max(updated_at)"},
    ]
    summary = run_check(warehouse, declared)

    assert not summary.ok
    values = {k.name: (k.value, k.error) for k in summary.kpis}
    assert values["customer_count"] == (200, None)
    assert values["average_revenue"][0] is None
    assert "spec.metrics[1] average_revenue: Binder Error" in str(values["average_revenue"][1])
    assert "no_such_column" in str(values["average_revenue"][1])
    assert values["orders"] == (None, "spec.metrics[2] orders: table marts.orders does not exist")
    assert values["last_update"] == (
        None,
        "spec.metrics[3] last_update: the value is TIMESTAMP, not a number: use an aggregate "
        "such as count(*), sum(column) or avg(column)",
    )
    assert summary.error is not None
    assert summary.error.startswith("3 KPI(s) could not be computed: spec.metrics[1] ")
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        recorded = connection.execute("SELECT name, value FROM _duckherd.kpis").fetchall()
    assert ("customer_count", 200) in recorded and len(recorded) == 4


def test_a_null_value_is_reported_and_does_not_fail(tmp_path: Path) -> None:
    warehouse = make_warehouse(tmp_path / "w.duckdb")
    empty = {**METRICS[1], "expression": "avg(revenue) FILTER (WHERE revenue > 1e9)"}
    summary = run_check(warehouse, [empty])
    assert summary.ok, summary.error
    assert (summary.kpis[0].value, summary.kpis[0].error) == (None, None)


# --------------------------------------------------------------------------- read-only proof


def test_the_kpi_connection_cannot_write_or_reach_outside(tmp_path: Path) -> None:
    warehouse = make_warehouse(tmp_path / "w.duckdb")
    with duckdb.connect(str(warehouse)) as connection:
        connection.execute("CREATE SEQUENCE marts.seq")
    outside = tmp_path / "outside"
    attempts = [
        "CREATE TABLE marts.pwned AS SELECT 1 AS x",
        "INSERT INTO marts.customers (customer_id) VALUES (-1)",
        "DELETE FROM marts.customers",
        "DROP TABLE marts.customers",
        "SELECT nextval('marts.seq')",
        f"COPY marts.customers TO '{outside}.csv'",
        f"ATTACH '{outside}.duckdb' AS other",
        "INSTALL httpfs",
        "SET enable_external_access = true",
        "SELECT * FROM read_csv('/etc/passwd')",
    ]
    with read_only_warehouse(warehouse, timeout_seconds=30) as connection:
        for statement in attempts:
            with pytest.raises(duckdb.Error):
                connection.execute(statement).fetchall()
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM marts.customers").fetchall() == [(200,)]
        assert connection.execute(
            "SELECT last_value FROM duckdb_sequences() WHERE sequence_name = 'seq'"
        ).fetchall() == [(None,)]  # never advanced (after a nextval it reads 1)
        tables = connection.execute("SELECT table_name FROM duckdb_tables()").fetchall()
    assert ("pwned",) not in tables
    assert not list(tmp_path.glob("outside*"))


def test_even_an_expression_validation_let_through_cannot_write(tmp_path: Path) -> None:
    """Validation bypassed: a syntax tree that calls nextval (a write) reaches the query."""
    warehouse = make_warehouse(tmp_path / "w.duckdb")
    with duckdb.connect(str(warehouse)) as connection:
        connection.execute("CREATE SEQUENCE marts.seq")
        tree = connection.execute(
            "SELECT json_serialize_sql('SELECT max(nextval(''marts.seq''))')"
        ).fetchall()[0][0]
    item = json.loads(tree)["statements"][0]["node"]["select_list"][0]
    metric = Metric(name="sneaky", help="h", table="customers", expression="count(*)")
    bypassed = PlannedKpi(0, metric, "marts.customers", item)

    (result,) = compute_kpis(warehouse, [bypassed], timeout_seconds=30)

    assert result.value is None
    assert "read-only" in str(result.error)
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        # The sequence's stored state: never advanced (after a nextval it reads 1).
        assert connection.execute(
            "SELECT last_value FROM duckdb_sequences() WHERE sequence_name = 'seq'"
        ).fetchall() == [(None,)]


# --------------------------------------------------------------------------- duckherd run


def duckherd_run(directory: Path, metric: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    manifest = pipelines.manifest("shop", sources=SOURCES, metrics=[METRICS[0], metric])
    (directory / "pipeline.yaml").write_text(yaml.safe_dump(manifest))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DUCKHERD_")}
    return subprocess.run(
        [str(DUCKHERD), "run", "pipeline.yaml"],
        env=environment,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        # refused by the API models (the shape; the operator refuses it the same way)
        ("avg(revenue); DROP TABLE marts.customers", "one expression only: `;` is not allowed"),
        # refused by DuckDB's parser, before the first stage
        ("avg(revenue) + months_active", "column months_active must be inside an aggregate"),
    ],
)
def test_duckherd_run_refuses_a_bad_kpi_in_one_line(
    tmp_path: Path, expression: str, message: str
) -> None:
    result = duckherd_run(tmp_path, {**METRICS[1], "expression": expression})
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    (line,) = [line for line in output.splitlines() if "spec.metrics[1].expression" in line]
    assert line.startswith("error: ") and message in line, line
    assert not (tmp_path / ".warehouse").exists()  # nothing ran
