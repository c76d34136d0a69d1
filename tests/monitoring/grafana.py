"""The chart's Grafana dashboard as Grafana would query it, against a real Prometheus.

Grafana itself is not used (AGPL): the dashboard JSON is read here, each panel's PromQL gets
its variables substituted the way Grafana does (`$namespace`, `$pipeline`, `$__range`,
`$__rate_interval`, `$__interval`), and runs as Grafana runs it — a range query for a graph,
an instant query where the target says `instant` — through Prometheus' HTTP API. Variable
queries (`label_values(selector, label)`) go to the label-values API with the selector as
`match[]`, which is what Grafana's Prometheus data source sends for them.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.services import PrometheusServer
from tests.tools import REPO_ROOT

DASHBOARD_FILE = REPO_ROOT / "charts" / "duckherd" / "files" / "grafana-dashboard.json"
METRICS_DOC = REPO_ROOT / "docs" / "metrics.md"
LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)$")
METRIC_NAME = re.compile(r"\b((?:duckherd|controller_runtime|rest_client)_[a-z0-9_]+)\b")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def load_dashboard(path: Path = DASHBOARD_FILE) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return dashboard


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


@dataclass(frozen=True)
class PanelQuery:
    panel_id: int
    title: str
    ref: str
    expr: str
    instant: bool


def panel_queries(dashboard: dict[str, Any]) -> list[PanelQuery]:
    return [
        PanelQuery(
            panel["id"], panel["title"], target["refId"], target["expr"], bool(target["instant"])
        )
        for panel in all_panels(dashboard)
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def variable(dashboard: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [v for v in dashboard["templating"]["list"] if v["name"] == name]
    return dict(found)


def documented_metrics() -> set[str]:
    """Metric names in the tables of docs/metrics.md."""
    return set(re.findall(r"^\| `([a-z_:][a-z0-9_:]*)`", METRICS_DOC.read_text(), re.MULTILINE))


def metric_names(expr: str) -> set[str]:
    """The Duckherd and controller metric families an expression reads."""
    names = set()
    for name in METRIC_NAME.findall(expr):
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and name.startswith("duckherd_stage_duration"):
                name = name.removesuffix(suffix)
        names.add(name)
    return names


@dataclass(frozen=True)
class Window:
    """The dashboard's time range and what Grafana derives from it."""

    start: float
    end: float
    scrape_interval: float  # the data source's scrape interval setting

    @property
    def step(self) -> float:
        """Grafana's $__interval: the range over about 300 points, at least a scrape."""
        return max(self.scrape_interval, math.ceil((self.end - self.start) / 300))

    @property
    def rate_interval(self) -> float:
        """Grafana's $__rate_interval: max($__interval + scrape interval, 4 * scrape interval)."""
        return max(self.step + self.scrape_interval, 4 * self.scrape_interval)


def substitute(text: str, values: dict[str, str], window: Window) -> str:
    builtins = {
        "__rate_interval": f"{math.ceil(window.rate_interval)}s",
        "__range": f"{math.ceil(window.end - window.start)}s",
        "__interval": f"{math.ceil(window.step)}s",
    }
    every = {**builtins, **values}
    for name in sorted(every, key=len, reverse=True):
        text = text.replace(f"${{{name}}}", every[name]).replace(f"${name}", every[name])
    return text


def variable_values(
    prometheus: PrometheusServer, query: str, values: dict[str, str], window: Window
) -> list[str]:
    """The options of a `label_values(...)` variable, as Grafana asks Prometheus for them."""
    parsed = LABEL_VALUES.match(substitute(query, values, window))
    assert parsed, f"not a label_values() query: {query}"
    params = {"start": f"{window.start:.0f}", "end": f"{window.end:.0f}"}
    if parsed["selector"]:
        params["match[]"] = parsed["selector"]
    found: list[str] = prometheus.api(f"label/{parsed['label']}/values", **params)
    return found


@dataclass(frozen=True)
class PanelResult:
    query: PanelQuery
    expr: str  # as sent
    series: int
    finite: list[float]  # every finite value returned

    @property
    def has_data(self) -> bool:
        return bool(self.finite)

    def line(self) -> str:
        kind = "instant" if self.query.instant else "range"
        shown = f"{min(self.finite):g}..{max(self.finite):g}" if self.finite else "NO DATA"
        return (
            f"panel {self.query.panel_id:>2} {self.query.ref} {kind:<7} "
            f"{self.query.title[:34]:<34} series={self.series:<2} values={shown}"
        )


def run_panel(
    prometheus: PrometheusServer, query: PanelQuery, values: dict[str, str], window: Window
) -> PanelResult:
    expr = substitute(query.expr, values, window)
    if query.instant:
        samples = prometheus.query(expr, at=window.end)
        numbers = [float(sample["value"][1]) for sample in samples]
        series = len(samples)
    else:
        matrix = prometheus.query_range(expr, window.start, window.end, window.step)
        numbers = [float(value) for row in matrix for _, value in row["values"]]
        series = len(matrix)
    return PanelResult(query, expr, series, [n for n in numbers if math.isfinite(n)])


def run_dashboard(
    prometheus: PrometheusServer, dashboard: dict[str, Any], values: dict[str, str], window: Window
) -> list[PanelResult]:
    return [run_panel(prometheus, query, values, window) for query in panel_queries(dashboard)]
