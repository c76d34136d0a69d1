"""The chart's Grafana dashboard: generated, valid dashboard JSON, shipped in a ConfigMap the
Grafana sidecar loads, its queries written against docs/metrics.md and accepted by a real
Prometheus. That every panel returns data from a real operator is checked on the cluster
(tests/e2e/test_operator_publish.py)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dashboard_model

from tests.chart import need_helm, one, render
from tests.monitoring.grafana import (
    DASHBOARD_FILE,
    Window,
    all_panels,
    documented_metrics,
    load_dashboard,
    metric_names,
    panel_queries,
    substitute,
    variable,
)
from tests.services import PrometheusServer, prometheus_server
from tests.tools import REPO_ROOT, missing_tool

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
DASHBOARD_FLAGS = ("--set", "metrics.grafanaDashboard.enabled=true")


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "grafana_dashboard", REPO_ROOT / "hack" / "grafana_dashboard.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["grafana_dashboard"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


def test_the_committed_dashboard_is_the_generated_one() -> None:
    assert DASHBOARD_FILE.read_text() == _load_generator().render(), (
        "charts/duckherd/files/grafana-dashboard.json drifted: "
        "run `python hack/grafana_dashboard.py --write`"
    )


def test_every_key_is_one_grafana_s_dashboard_model_knows(dashboard: dict[str, Any]) -> None:
    """Read into the Grafana 11.6 dashboard model of grafana-foundation-sdk and written back:
    a key the model does not know would be lost on the way."""
    model = dashboard_model.Dashboard.from_json(dashboard)
    assert json.loads(JSONEncoder(sort_keys=True).encode(model)) == dashboard


def test_the_dashboard_is_valid_dashboard_json(dashboard: dict[str, Any]) -> None:
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 39
    assert dashboard["uid"] == "duckherd-pipelines" and dashboard["title"]
    panels = all_panels(dashboard)
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), f"panel ids repeat: {ids}"
    assert all(isinstance(i, int) and i > 0 for i in ids)
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["description"], panel["id"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        targets = panel["targets"]
        assert targets, f"panel {panel['title']!r} has no targets"
        assert len({t["refId"] for t in targets}) == len(targets), panel["title"]
        for target in targets:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_panels_sit_on_the_grid_without_overlapping(dashboard: dict[str, Any]) -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in all_panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


def test_the_variables_pick_a_prometheus_a_namespace_and_a_pipeline(
    dashboard: dict[str, Any],
) -> None:
    names = [v["name"] for v in dashboard["templating"]["list"]]
    assert names == ["datasource", "namespace", "pipeline"]
    source = variable(dashboard, "datasource")
    assert (source["type"], source["query"]) == ("datasource", "prometheus")
    for name in ("namespace", "pipeline"):
        chosen = variable(dashboard, name)
        assert chosen["type"] == "query" and chosen["datasource"] == DATASOURCE
        assert re.fullmatch(rf"label_values\(.*, {name}\)", chosen["query"]), chosen["query"]
    assert variable(dashboard, "namespace")["includeAll"] is True
    assert '{namespace=~"$namespace"}' in variable(dashboard, "pipeline")["query"]
    used = {
        name for query in panel_queries(dashboard) for name in re.findall(r"\$\{?(\w+)", query.expr)
    }
    assert used <= {"namespace", "pipeline", "__range", "__rate_interval"}, used


def test_the_two_parts_cover_the_fleet_and_one_pipeline(dashboard: dict[str, Any]) -> None:
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == ["Fleet", "Pipeline $namespace/$pipeline"]
    titles = {p["title"] for p in all_panels(dashboard)}
    for needed in (
        "Pipelines by data state",
        "Run success rate",
        "Freshness against the SLA",
        "Runs",
        "Stage durations",
        "Rows per table",
        "Checks",
        "Failed checks",
        "KPIs",
        "Warehouse volume",
    ):
        assert needed in titles, needed
    pipeline_queries = [q.expr for q in panel_queries(dashboard) if q.panel_id > 10]
    assert all('pipeline="$pipeline"' in expr for expr in pipeline_queries)


def _rule_exprs() -> Iterator[str]:
    template = (REPO_ROOT / "charts/duckherd/templates/prometheusrule.yaml").read_text()
    yield from re.findall(r"expr: \|\n((?:\s{12}.*\n)+)", template)


def test_every_metric_the_dashboard_and_the_alerts_read_is_documented(
    dashboard: dict[str, Any],
) -> None:
    documented = documented_metrics()
    assert "duckherd_pipeline_info" in documented
    exprs = [q.expr for q in panel_queries(dashboard)]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    exprs += list(_rule_exprs())
    used = {name for expr in exprs for name in metric_names(expr)}
    assert len(used) > 20
    missing = {name for name in used if name not in documented}
    assert not missing, f"not in docs/metrics.md: {sorted(missing)}"


@pytest.fixture(scope="module")
def empty_prometheus() -> Iterator[PrometheusServer]:
    if shutil.which("prometheus") is None:
        missing_tool("no prometheus binary (Debian package `prometheus`; hack/setup.sh)")
    with prometheus_server([]) as server:
        yield server


def test_prometheus_accepts_every_panel_query(
    dashboard: dict[str, Any], empty_prometheus: PrometheusServer
) -> None:
    """Parsed and evaluated by a real Prometheus (no data here: that is the e2e check)."""
    window = Window(start=1_700_000_000, end=1_700_003_600, scrape_interval=15)
    values = {"namespace": "shop", "pipeline": "sales"}
    for query in panel_queries(dashboard):
        expr = substitute(query.expr, values, window)
        assert "$" not in expr, expr
        if query.instant:
            empty_prometheus.query(expr, at=window.end)
        else:
            empty_prometheus.query_range(expr, window.start, window.end, window.step)


# --------------------------------------------------------------------------- chart


@pytest.fixture(scope="module")
def helm() -> str:
    return need_helm()


def test_the_dashboard_configmap_is_off_by_default(helm: str) -> None:
    assert not [d for d in render(helm) if d["metadata"]["name"].endswith("grafana-dashboard")]
    off = render(helm, *DASHBOARD_FLAGS, "--set", "metrics.enabled=false")
    assert not [d for d in off if d["metadata"]["name"].endswith("grafana-dashboard")]


def test_the_sidecar_finds_the_dashboard_in_its_configmap(helm: str) -> None:
    docs = render(helm, *DASHBOARD_FLAGS)
    configmap = one(docs, "ConfigMap", "demo-duckherd-grafana-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == "duckherd"
    assert json.loads(configmap["data"]["duckherd-pipelines.json"]) == load_dashboard()
    moved = one(
        render(
            helm,
            *DASHBOARD_FLAGS,
            "--set",
            "metrics.grafanaDashboard.namespace=monitoring",
            "--set",
            "metrics.grafanaDashboard.annotations.grafana_folder=Data",
        ),
        "ConfigMap",
        "demo-duckherd-grafana-dashboard",
    )
    assert moved["metadata"]["namespace"] == "monitoring"
    assert moved["metadata"]["annotations"] == {"grafana_folder": "Data"}
