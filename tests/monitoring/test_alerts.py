"""The chart's alert rules, checked with Prometheus' own tool.

The rules are rendered from the chart by `helm template` (no second copy), then
`promtool check rules` validates them and `promtool test rules` runs tests/monitoring/
alerts_test.yaml: every alert fires where it must, with the text on-call reads, and stays
silent where it must not. promtool comes from Debian's `prometheus` package (hack/setup.sh);
without it (or helm) the tests skip, and fail under CI=true.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import tools
from tests.chart import need_helm, one, render
from tests.tools import REPO_ROOT

HERE = Path(__file__).resolve().parent
RULE_TESTS = HERE / "alerts_test.yaml"
RUNBOOKS = REPO_ROOT / "docs" / "runbooks.md"
RULES_FLAGS = ("--set", "metrics.prometheusRule.enabled=true")
ALERTS = {
    "DuckherdPipelineRunFailed",
    "DuckherdPipelineDataStale",
    "DuckherdPipelineDataAging",
    "DuckherdPipelineChecksFailed",
    "DuckherdPipelinePublishBlocked",
    "DuckherdPipelineMissedRun",
    "DuckherdWarehouseVolumeFilling",
    "DuckherdLineageDeliveryFailing",
    "DuckherdOperatorDown",
    "DuckherdOperatorNotReconciling",
    "DuckherdOperatorReconcileErrors",
}


@pytest.fixture(scope="module")
def helm() -> str:
    return need_helm()


@pytest.fixture(scope="module")
def promtool() -> str:
    return tools.promtool()


def rendered_rules(helm: str, *flags: str) -> dict[str, Any]:
    """The PrometheusRule the chart renders (release and namespace "duckherd")."""
    docs = render(helm, *RULES_FLAGS, *flags, release="duckherd", namespace="duckherd")
    return one(docs, "PrometheusRule")


def alert_rules(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r]


@pytest.fixture(scope="module")
def rules_dir(helm: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rendered rules as a Prometheus rule file, next to a copy of the promtool tests."""
    directory = tmp_path_factory.mktemp("rules")
    spec = rendered_rules(helm)["spec"]
    (directory / "duckherd-rules.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    shutil.copy(RULE_TESTS, directory / RULE_TESTS.name)
    return directory


def _promtool(promtool: str, directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=directory, capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_accepts_the_rendered_rules(promtool: str, rules_dir: Path) -> None:
    done = _promtool(promtool, rules_dir, "check", "rules", "duckherd-rules.yaml")
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in done.stdout


def test_promtool_unit_tests_pass(promtool: str, rules_dir: Path) -> None:
    done = _promtool(promtool, rules_dir, "test", "rules", RULE_TESTS.name)
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_is_tested_firing_and_silent() -> None:
    cases = [
        case
        for group in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in group["alert_rule_test"]
    ]
    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    silent = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert firing == ALERTS, f"not tested firing: {ALERTS - firing}"
    assert silent == ALERTS, f"not tested silent: {ALERTS - silent}"


def test_the_chart_ships_exactly_the_documented_alerts(helm: str) -> None:
    assert {rule["alert"] for rule in alert_rules(rendered_rules(helm))} == ALERTS


def _github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown page."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", markdown, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_every_alert_links_its_runbook_section_and_says_what_to_do(helm: str) -> None:
    anchors = _github_anchors(RUNBOOKS.read_text())
    base = "https://github.com/duckherd/duckherd/blob/main/docs/runbooks.md#"
    for rule in alert_rules(rendered_rules(helm)):
        annotations = rule["annotations"]
        url = annotations["runbook_url"]
        assert url.startswith(base), url
        assert url.removeprefix(base) in anchors, f"{rule['alert']}: no section for {url}"
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert annotations["summary"] and len(annotations["description"]) > 100
        assert "kubectl " in annotations["description"], rule["alert"]


def test_rules_are_off_by_default_and_follow_the_values(helm: str) -> None:
    assert not [d for d in render(helm) if d["kind"] == "PrometheusRule"]
    assert not [
        d
        for d in render(helm, *RULES_FLAGS, "--set", "metrics.enabled=false")
        if d["kind"] == "PrometheusRule"
    ], "no rules for metrics nobody serves"
    rule = rendered_rules(
        helm,
        "--set",
        "metrics.prometheusRule.labels.release=prom",
        "--set",
        "metrics.prometheusRule.alertLabels.team=data",
        "--set",
        "metrics.prometheusRule.runbookUrl=https://wiki.example/runbooks/",
        "--set",
        "metrics.prometheusRule.operatorJob=kubernetes-service-endpoints",
        "--set",
        "metrics.prometheusRule.warehouseUsagePercent=90",
        "--set",
        "metrics.prometheusRule.missedRunGraceMinutes=30",
    )
    assert rule["metadata"]["labels"]["release"] == "prom"
    assert rule["metadata"]["namespace"] == "duckherd"
    alerts = {r["alert"]: r for r in alert_rules(rule)}
    for alert in alerts.values():
        assert alert["labels"]["team"] == "data"
        assert alert["annotations"]["runbook_url"].startswith("https://wiki.example/runbooks#")
    assert 'up{job="kubernetes-service-endpoints"}' in alerts["DuckherdOperatorDown"]["expr"]
    assert ") > 90" in alerts["DuckherdWarehouseVolumeFilling"]["expr"]
    assert "> 1800" in alerts["DuckherdPipelineMissedRun"]["expr"]
