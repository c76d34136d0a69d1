"""The Grafana dashboard the chart ships (charts/duckherd/files/grafana-dashboard.json).

Built with Grafana's own builders (grafana-foundation-sdk, the Grafana 11.6 types pinned in
constraints.txt), which lay the panels out on the grid and write the dashboard model Grafana
reads. Run `python hack/grafana_dashboard.py --write` after a change; a test fails when the
committed JSON drifts from this file. Every query uses the metrics of docs/metrics.md; every
panel is checked to return data against a real Prometheus scraping the operator on the e2e
cluster (tests/e2e/test_operator_publish.py).

Two parts: the fleet (every pipeline of the selected namespaces: states, success rate,
freshness against the SLA, operator health) and one pipeline (runs, stages, tables, checks,
KPIs, warehouse). Variables: `datasource` (any Prometheus), `namespace` (one or All) and
`pipeline`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    dashboard,
    gauge,
    piechart,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models import piechart as piechart_models
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

REPO_ROOT = Path(__file__).resolve().parents[1]
DASHBOARD_FILE = REPO_ROOT / "charts" / "duckherd" / "files" / "grafana-dashboard.json"
UID = "duckherd-pipelines"

DATASOURCE = dashboard_models.DataSourceRef(type_val="prometheus", uid="${datasource}")
FLEET = 'namespace=~"$namespace"'
ONE = 'namespace=~"$namespace", pipeline="$pipeline"'
# The variables' values come from the one series every pipeline has.
INFO = "duckherd_pipeline_info"
VOLUME_USED = (
    f"max(1 - duckherd_warehouse_volume_available_bytes{{{ONE}}}"
    f" / duckherd_warehouse_volume_capacity_bytes{{{ONE}}})"
)


def query(
    expr: str,
    legend: str = "",
    *,
    ref: str = "A",
    instant: bool = False,
    table_format: bool = False,
) -> prometheus.Dataquery:
    """A Prometheus target: a range query for graphs, an instant one for the current value."""
    target = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    if legend:
        target = target.legend_format(legend)
    target = target.instant() if instant else target.range()
    if table_format:
        target = target.format(PromQueryFormat.TABLE)
    return target


def _last_value() -> common.ReduceDataOptions:
    return common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


AnyPanel = TypeVar(
    "AnyPanel",
    stat.Panel,
    bargauge.Panel,
    gauge.Panel,
    piechart.Panel,
    timeseries.Panel,
    table.Panel,
)
ValuePanel = TypeVar("ValuePanel", stat.Panel, bargauge.Panel, gauge.Panel, piechart.Panel)


def titled(panel: AnyPanel, title: str, description: str, width: int, height: int) -> AnyPanel:
    return (
        panel.title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(width)
        .height(height)
    )


def current(panel: ValuePanel, expr: str, unit: str = "none", legend: str = "") -> ValuePanel:
    """A panel showing the current value of each series of an instant query."""
    return (
        panel.with_target(query(expr, legend, instant=True))
        .unit(unit)
        .reduce_options(_last_value())
    )


def stat_panel(title: str, description: str, expr: str, unit: str, legend: str = "") -> stat.Panel:
    panel = current(titled(stat.Panel(), title, description, 4, 4), expr, unit, legend)
    return panel.graph_mode(common_models.BigValueGraphMode.NONE)


def graph(
    title: str, description: str, unit: str, *targets: prometheus.Dataquery
) -> timeseries.Panel:
    legend = (
        common.VizLegendOptions()
        .display_mode(common_models.LegendDisplayMode.LIST)
        .placement(common_models.LegendPlacement.BOTTOM)
        .show_legend(True)
    )
    panel = titled(timeseries.Panel(), title, description, 12, 8).unit(unit).legend(legend)
    for target in targets:
        panel = panel.with_target(target)
    return panel


def bars(title: str, description: str, expr: str, unit: str, legend: str) -> bargauge.Panel:
    panel = current(titled(bargauge.Panel(), title, description, 8, 8), expr, unit, legend)
    return panel.orientation(common_models.VizOrientation.HORIZONTAL).display_mode(
        common_models.BarGaugeDisplayMode.GRADIENT
    )


def table_panel(title: str, description: str, *targets: prometheus.Dataquery) -> table.Panel:
    """A table of instant queries merged on their labels (one row per label set)."""
    merge = dashboard_models.DataTransformerConfig(id_val="merge", options={})
    panel = titled(table.Panel(), title, description, 12, 8).with_transformation(merge)
    for target in targets:
        panel = panel.with_target(target)
    return panel


def label_variable(name: str, label: str, selector: str) -> dashboard.QueryVariable:
    """A variable whose options are the values of `name` on the series `selector` matches."""
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(f"label_values({selector}, {name})")
        .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC)
    )


def _variables() -> Iterator[Builder[dashboard_models.VariableModel]]:
    yield dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
    yield label_variable("namespace", "Namespace", INFO).include_all(True).all_value(".*")
    yield label_variable("pipeline", "Pipeline", f'{INFO}{{namespace=~"$namespace"}}')


def _fleet() -> Iterator[Builder[dashboard_models.Panel]]:
    yield stat_panel(
        "Pipelines",
        "DataPipelines the operator serves in the selected namespaces.",
        f"count(max by (namespace, pipeline) ({INFO}{{{FLEET}}}))",
        "none",
    ).height(8)
    yield stat_panel(
        "Run success rate",
        "Succeeded runs among all finished runs (succeeded, failed, blocked) in the time range.",
        f'sum(increase(duckherd_pipeline_runs_total{{{FLEET}, result="succeeded"}}[$__range]))'
        f" / sum(increase(duckherd_pipeline_runs_total{{{FLEET}}}[$__range]))",
        "percentunit",
    ).height(8)
    yield stat_panel(
        "Pipelines with data not ready",
        "Pipelines whose DataReady condition is not True (failed run, failed checks, blocked "
        "publish, stale data, or no run yet).",
        "count(max by (namespace, pipeline) "
        f'(duckherd_pipeline_condition{{{FLEET}, type="DataReady", status!="True"}}))',
        "none",
    ).height(8)
    pie = titled(
        piechart.Panel(),
        "Pipelines by data state",
        "DataReady per pipeline: True, or the reason it is not (docs/status.md).",
        12,
        8,
    )
    yield current(
        pie,
        "count by (reason) (max by (namespace, pipeline, reason) "
        f'(duckherd_pipeline_condition{{{FLEET}, type="DataReady"}}))',
        legend="{{reason}}",
    ).pie_type(piechart_models.PieChartType.DONUT)
    yield graph(
        "Finished runs by result",
        "Runs that ended in each interval, over the selected namespaces.",
        "none",
        query(
            "sum by (result) "
            f"(increase(duckherd_pipeline_runs_total{{{FLEET}}}[$__rate_interval]))",
            "{{result}}",
        ),
    )
    age = (
        "max by (namespace, pipeline) "
        f"(time() - duckherd_pipeline_last_load_timestamp_seconds{{{FLEET}}})"
    )
    error_after = (
        f"max by (namespace, pipeline) (duckherd_pipeline_freshness_error_after_seconds{{{FLEET}}})"
    )
    yield table_panel(
        "Freshness against the SLA",
        "Per pipeline: how old the data is, its warnAfter and errorAfter (spec.freshness), and "
        "the age as a share of errorAfter (100 % is stale).",
        query(age, ref="A", instant=True, table_format=True),
        query(
            "max by (namespace, pipeline) "
            f"(duckherd_pipeline_freshness_warn_after_seconds{{{FLEET}}})",
            ref="B",
            instant=True,
            table_format=True,
        ),
        query(error_after, ref="C", instant=True, table_format=True),
        query(
            f"{age} / on (namespace, pipeline) {error_after}",
            ref="D",
            instant=True,
            table_format=True,
        ),
    )
    yield graph(
        "Operator: reconciles by result",
        "Reconcile passes of the operator per second (controller_runtime_reconcile_total).",
        "ops",
        query(
            "sum by (result) (rate(controller_runtime_reconcile_total[$__rate_interval]))",
            "{{result}}",
        ),
    )
    yield graph(
        "Operator: API requests by code",
        "Requests of the operator to the Kubernetes API per second, by method and status code.",
        "reqps",
        query(
            "sum by (method, code) (rate(rest_client_requests_total[$__rate_interval]))",
            "{{method}} {{code}}",
        ),
    )


def _pipeline() -> Iterator[Builder[dashboard_models.Panel]]:
    yield stat_panel(
        "Data",
        "The DataReady condition: True, or the reason the data is not ready.",
        f'max by (status, reason) (duckherd_pipeline_condition{{{ONE}, type="DataReady"}})',
        "none",
        "{{reason}}",
    ).text_mode(common_models.BigValueTextMode.NAME)
    yield stat_panel(
        "Since last success",
        "Time since the latest successful run ended.",
        f"time() - max(duckherd_pipeline_last_success_timestamp_seconds{{{ONE}}})",
        "s",
    )
    yield stat_panel(
        "Data age",
        "Time since the last successful load (what spec.freshness judges).",
        f"time() - max(duckherd_pipeline_last_load_timestamp_seconds{{{ONE}}})",
        "s",
    )
    yield stat_panel(
        "Run in progress",
        "1 while a run of this pipeline is in progress, else 0.",
        f"max(duckherd_pipeline_running{{{ONE}}})",
        "none",
    )
    yield stat_panel(
        "Warehouse size",
        "The DuckDB file and its write-ahead log.",
        f"max(duckherd_warehouse_size_bytes{{{ONE}}})",
        "bytes",
    )
    yield stat_panel(
        "Checks",
        "The latest check verdict: checks passed, failed (error severity), warned.",
        f"max by (result) (duckherd_pipeline_checks{{{ONE}}})",
        "none",
        "{{result}}",
    )
    yield graph(
        "Runs",
        "Runs of this pipeline that ended in each interval, by result.",
        "none",
        query(
            f"sum by (result) (increase(duckherd_pipeline_runs_total{{{ONE}}}[$__rate_interval]))",
            "{{result}}",
        ),
    )
    yield graph(
        "Stage durations",
        "Each stage's duration in its latest run, over time.",
        "s",
        query(f"max by (stage) (duckherd_stage_last_duration_seconds{{{ONE}}})", "{{stage}}"),
    )
    yield bars(
        "Stage duration p95 (time range)",
        "95th percentile of each stage's duration over the runs in the time range.",
        "histogram_quantile(0.95, sum by (stage, le) "
        f"(increase(duckherd_stage_duration_seconds_bucket{{{ONE}}}[$__range])))",
        "s",
        "{{stage}}",
    )
    yield bars(
        "Rows per table",
        "Rows in each warehouse table after the last run that touched it.",
        f"max by (table) (duckherd_table_rows{{{ONE}}})",
        "short",
        "{{table}}",
    )
    yield bars(
        "Published rows",
        "Rows the latest successful publish sent to each target.",
        f"max by (target, table) (duckherd_published_rows{{{ONE}}})",
        "short",
        "{{target}} {{table}}",
    )
    yield bars(
        "Stage peak memory (latest run)",
        "Peak resident memory of each stage's process in its latest run.",
        f"max by (stage) (duckherd_stage_last_peak_memory_bytes{{{ONE}}})",
        "bytes",
        "{{stage}}",
    )
    yield bars(
        "Stage CPU (latest run)",
        "CPU time (user + system) each stage used in its latest run.",
        f"max by (stage) (duckherd_stage_last_cpu_seconds{{{ONE}}})",
        "s",
        "{{stage}}",
    )
    volume = titled(
        gauge.Panel(),
        "Warehouse volume",
        "Used share of the warehouse volume; the alert fires at 80 % by default.",
        8,
        8,
    )
    yield current(volume, VOLUME_USED, "percentunit").min(0).max(1)
    yield table_panel(
        "Failed checks",
        "The checks that failed in the latest verdict, with their severity.",
        query(
            f"max by (check, severity) (duckherd_check_failed{{{ONE}}})",
            instant=True,
            table_format=True,
        ),
    )
    yield table_panel(
        "KPIs",
        "The pipeline's business KPIs (spec.metrics), as the latest check stage computed them.",
        query(f"max by (name) (duckherd_kpi{{{ONE}}})", instant=True, table_format=True),
    )
    yield graph(
        "KPIs over time",
        "The KPIs' values run after run.",
        "short",
        query(f"max by (name) (duckherd_kpi{{{ONE}}})", "{{name}}"),
    )
    yield graph(
        "Warehouse size over time",
        "The DuckDB file against the volume's capacity.",
        "bytes",
        query(f"max(duckherd_warehouse_size_bytes{{{ONE}}})", "warehouse", ref="A"),
        query(
            f"max(duckherd_warehouse_volume_capacity_bytes{{{ONE}}})", "volume capacity", ref="B"
        ),
    )


def build_dashboard() -> dict[str, object]:
    """The dashboard model as Grafana stores it, panel ids in layout order."""
    builder = (
        dashboard.Dashboard("Duckherd pipelines")
        .uid(UID)
        .description("Duckherd DataPipelines: the fleet, then one pipeline (docs/monitoring.md).")
        .tags(["duckherd"])
        .time("now-24h", "now")
        .refresh("1m")
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
        .editable()
    )
    for variable in _variables():
        builder = builder.with_variable(variable)
    builder = builder.with_row(dashboard.Row("Fleet"))
    for panel in _fleet():
        builder = builder.with_panel(panel)
    builder = builder.with_row(dashboard.Row("Pipeline $namespace/$pipeline"))
    for panel in _pipeline():
        builder = builder.with_panel(panel)
    model: dict[str, object] = json.loads(JSONEncoder(sort_keys=True).encode(builder.build()))
    panels = model["panels"]
    assert isinstance(panels, list)
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number
    return model


def render() -> str:
    return json.dumps(build_dashboard(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--write" in argv:
        DASHBOARD_FILE.write_text(text)
        print(f"wrote {DASHBOARD_FILE.relative_to(REPO_ROOT)}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
