"""Business KPIs (`spec.metrics[]`) in the core: the API, the expression's shape, the summary
contract and `status.kpis`. DuckDB's verdict and the computation are in tests/jobs/test_kpis.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from duckherd.api import DataPipelineSpec, DataPipelineStatus, KpiStatus
from duckherd.kpis import expression_problem
from duckherd.status import NULL_KPI_MESSAGE, RunObservation, StageObservation, compute_status
from duckherd.summary import KpiResult, StageSummary, decode, encode
from duckherd.validation import describe_validation_errors
from duckherd_operator.validation import parse_pipeline
from tests.unit.manifests import manifest, spec

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
METRICS = [
    {"name": "customer_count", "help": "Customers", "table": "customer_analytics",
     "expression": "count(*)"},
    {"name": "average_monthly_ltv", "help": "Average monthly LTV",
     "table": "marts.customer_analytics", "expression": "avg(monthly_ltv)"},
]  # fmt: skip


def _spec_error(metrics: list[dict[str, Any]]) -> str:
    with pytest.raises(ValidationError) as caught:
        DataPipelineSpec.model_validate(spec(metrics=metrics))
    return describe_validation_errors(caught.value.errors(), "spec")


def test_metrics_parse_and_make_the_check_stage_run() -> None:
    parsed = DataPipelineSpec.model_validate(spec(metrics=METRICS, quality=None))
    assert [m.name for m in parsed.metrics] == ["customer_count", "average_monthly_ltv"]
    assert "check" in parsed.stages()


@pytest.mark.parametrize(
    "expression",
    [
        "count(*)",
        "avg(monthly_ltv)",
        "sum(monthly_ltv) FILTER (WHERE active)",
        "count(DISTINCT customer_id)",
        "max(updated_at) - min(updated_at)",
        "sum(x) / nullif(count(*), 0)",
        "avg(extract(year FROM signup_date))",
        "avg(CAST(x AS DOUBLE))",
        "avg(x::DOUBLE)",
        "string_agg(name, ';')",  # a `;` inside a string is data
        'avg("select")',  # a quoted identifier is a name
        "quantile_cont(x, 0.5)",
        "CASE WHEN count(*) > 0 THEN sum(x) ELSE 0 END",
    ],
)
def test_the_shape_accepts_one_expression(expression: str) -> None:
    assert expression_problem(expression) is None


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("count(*); DROP TABLE marts.t", "one expression only: `;` is not allowed"),
        ("(SELECT max(x) FROM marts.other)", "SELECT is not allowed: no queries or statements"),
        ("count(*) FROM marts.other", "FROM is not allowed: the table goes in `table`"),
        ("count(*) WHERE x > 1", "WHERE is not allowed"),
        ("avg(x), sum(y)", "one expression only: a `,` outside parentheses"),
        ("count(*) AS n", "an alias (AS) is not allowed"),
        ("sum(x) OVER ()", "window functions (OVER) are not allowed"),
        ("count(*) -- ", "comments are not allowed"),
        ("count(*) /* x */", "comments are not allowed"),
        ("count(*))", "unbalanced parentheses"),
        ("count((*)", "unbalanced parentheses"),
        ("   ", "is empty"),
        ("INSERT INTO t VALUES (1)", "INSERT is not allowed"),
        ("WITH x AS (SELECT 1) SELECT 1", "WITH is not allowed"),
    ],
)
def test_the_shape_refuses_what_is_not_one_expression(expression: str, message: str) -> None:
    problem = expression_problem(expression)
    assert problem is not None and problem.startswith(message), problem
    assert "\n" not in problem


def test_a_refused_expression_is_one_line_naming_the_field() -> None:
    bad = {**METRICS[1], "expression": "avg(x); COPY marts.t TO '/tmp/x'"}
    assert _spec_error([METRICS[0], bad]) == (
        "spec.metrics[1].expression: one expression only: `;` is not allowed"
    )


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"name": "9lives"}, "spec.metrics[0].name: String should match pattern"),
        ({"name": "kpi:ratio"}, "spec.metrics[0].name: String should match pattern"),
        ({"name": "with space"}, "spec.metrics[0].name: String should match pattern"),
        ({"help": ""}, "spec.metrics[0].help: String should have at least 1 character"),
        ({"table": "Marts.T"}, "spec.metrics[0].table: String should match pattern"),
        ({"expression": ""}, "spec.metrics[0].expression: String should have at least 1"),
        ({"unknown": 1}, "spec.metrics[0].unknown: Extra inputs are not permitted"),
    ],
)
def test_bad_fields_are_named(change: dict[str, Any], named: str) -> None:
    assert _spec_error([{**METRICS[0], **change}]).startswith(named)


def test_names_are_unique_within_the_pipeline() -> None:
    twice = [METRICS[0], {**METRICS[1], "name": "customer_count"}]
    assert "metrics: duplicate names customer_count" in _spec_error(twice)


def test_the_operator_stalls_an_invalid_expression_naming_the_field() -> None:
    bad = {**METRICS[0], "expression": "(SELECT 1)"}
    parsed = parse_pipeline(manifest(spec(metrics=[METRICS[0], bad])))
    assert parsed.pipeline is None and parsed.problem is not None
    assert parsed.problem.reason == "InvalidSpec"
    assert parsed.problem.message.startswith("spec.metrics[1].expression: SELECT is not allowed")


# --------------------------------------------------------------------------- contract, status


def check_stage(kpis: list[KpiResult], ok: bool = True) -> StageObservation:
    summary = StageSummary(
        stage="check", ok=ok, kpis=kpis, finishedAt="2026-12-02T09:00:00Z", runId="r1"
    )
    return StageObservation(
        stage="check", job="c", state="Succeeded" if ok else "Failed", summary=summary
    )


def status_after(
    *stages: StageObservation,
    metrics: list[dict[str, Any]] = METRICS,
    previous: DataPipelineStatus | None = None,
) -> DataPipelineStatus:
    return compute_status(
        spec=DataPipelineSpec.model_validate(spec(metrics=metrics)),
        generation=1,
        previous=previous or DataPipelineStatus(),
        run=RunObservation(run_id="r1", trigger="Manual", stages=stages),
        now=NOW,
    )


def test_the_summary_carries_kpis_through_the_termination_message() -> None:
    summary = StageSummary(
        stage="check",
        ok=True,
        kpis=[
            KpiResult(name="customer_count", table="marts.customer_analytics", value=10000),
            KpiResult(name="average_monthly_ltv", table="marts.customer_analytics", value=None),
        ],
    )
    assert decode(encode(summary), "check").kpis == summary.kpis


def test_kpis_are_shed_last_and_only_when_nothing_else_fits() -> None:
    kpis = [KpiResult(name=f"kpi_{i}", table="marts.t", value=i * 1.5) for i in range(32)]
    models = {f"model_{i}_" + "m" * 60: "success" for i in range(40)}
    summary = StageSummary(stage="check", ok=True, kpis=kpis, models=models)
    assert len(summary.model_dump_json()) > 4096
    kept = decode(encode(summary))
    assert kept.truncated and kept.models == {} and kept.kpis == kpis


def test_status_kpis_come_from_the_check_stage() -> None:
    status = status_after(
        check_stage(
            [
                KpiResult(name="customer_count", table="marts.customer_analytics", value=10000),
                KpiResult(name="average_monthly_ltv", table="marts.customer_analytics"),
            ]
        )
    )
    assert [k.model_dump(exclude_none=True) for k in status.kpis] == [
        {
            "name": "customer_count",
            "table": "marts.customer_analytics",
            "value": 10000.0,
            "runId": "r1",
            "computedAt": "2026-12-02T09:00:00Z",
        },
        {
            "name": "average_monthly_ltv",
            "table": "marts.customer_analytics",
            "runId": "r1",
            "computedAt": "2026-12-02T09:00:00Z",
            "message": NULL_KPI_MESSAGE,
        },
    ]


def test_a_kpi_that_could_not_be_computed_shows_its_error() -> None:
    error = "spec.metrics[0]: table marts.customer_analytics does not exist"
    failed = KpiResult(name="customer_count", table="marts.customer_analytics", error=error)
    status = status_after(check_stage([failed], ok=False))
    assert status.kpis[0].value is None and status.kpis[0].message == error


def test_kpis_stay_until_the_next_check_and_go_with_their_declaration() -> None:
    kept = KpiStatus(name="customer_count", table="marts.customer_analytics", value=5, runId="r0")
    gone = KpiStatus(name="dropped", table="marts.t", value=1, runId="r0")
    previous = DataPipelineStatus(kpis=[kept, gone])
    assert status_after(previous=previous).kpis == [kept]  # no check stage in this run yet
    assert status_after(previous=previous, metrics=[]).kpis == []
