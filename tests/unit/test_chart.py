"""The Helm chart: values schema drift, documented values, and what `helm template` renders.

The rendering checks need a helm binary (PATH, $HELM, or the cluster build cache of
hack/cluster); without one they are reported as skipped, never as passed.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from duckherd.contract import ENV_IMAGE, ENV_IMAGE_PULL_POLICY, ENV_STAGE_RESOURCES
from duckherd.crd import build_crd
from duckherd_operator.builders import DEFAULT_STAGE_RESOURCES
from duckherd_operator.validation import stage_resources
from tests.chart import CHART, KUBE_FLAGS, KUBE_VERSION, need_helm
from tests.chart import cluster_helm as _cluster_helm
from tests.chart import one as _one
from tests.chart import render as _render
from tests.chart import run_helm as _run_helm
from tests.tools import missing_tool

REPO_ROOT = Path(__file__).resolve().parents[2]


def _load_chart_schema() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "chart_schema", REPO_ROOT / "hack/chart_schema.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["chart_schema"] = module
    spec.loader.exec_module(module)
    return module


chart_schema = _load_chart_schema()


def _values_text() -> str:
    return (CHART / "values.yaml").read_text()


# --------------------------------------------------------------------------- values & schema


def test_values_schema_matches_the_typed_description() -> None:
    committed = (CHART / "values.schema.json").read_text()
    assert committed == chart_schema.render_schema(), (
        "charts/duckherd/values.schema.json drifted: run `python hack/chart_schema.py --write`"
    )


def test_chart_readme_values_table_matches_the_typed_description() -> None:
    committed = (CHART / "README.md").read_text()
    assert committed == chart_schema.render_readme(), (
        "charts/duckherd/README.md drifted: run `python hack/chart_schema.py --write`"
    )
    for key in ("watchNamespaces", "crds.keep", "image.pullPolicy", "metrics.port"):
        assert f"| `{key}` |" in committed


def test_values_yaml_validates_against_the_typed_description() -> None:
    chart_schema.ChartValues.model_validate(yaml.safe_load(_values_text()))


def test_typed_description_rejects_unknown_keys_and_wrong_types() -> None:
    values = yaml.safe_load(_values_text())
    with pytest.raises(ValueError, match="imagee"):
        chart_schema.ChartValues.model_validate({**values, "imagee": {}})
    with pytest.raises(ValueError, match=r"image\.pullPolicy"):
        chart_schema.ChartValues.model_validate(
            {**values, "image": {**values["image"], "pullPolicy": "Sometimes"}}
        )


def _schema_paths(schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        yield path
        yield from _schema_paths(sub, f"{path}.")


def _yaml_paths(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, dict):
        for name, sub in node.items():
            path = f"{prefix}{name}"
            yield path
            yield from _yaml_paths(sub, f"{path}.")


def test_values_yaml_sets_every_key_the_schema_knows() -> None:
    in_yaml = set(_yaml_paths(yaml.safe_load(_values_text())))
    schema = chart_schema.build_schema()
    # Open maps (requests/limits, security contexts) may hold keys the schema does not list.
    missing = {path for path in _schema_paths(schema) if path not in in_yaml}
    unset_limits = {"resources.limits.cpu", "stagePods.resources.limits.cpu"}
    assert not missing - {"resources.requests.memory", *unset_limits}, missing


def test_every_values_yaml_key_has_a_comment_above_it() -> None:
    lines = _values_text().splitlines()
    key_line = re.compile(r"^\s*([A-Za-z][A-Za-z0-9]*):")
    undocumented = [
        line.strip()
        for previous, line in zip(["", *lines], lines, strict=False)
        if key_line.match(line) and not previous.strip().startswith("#")
    ]
    assert not undocumented, f"values.yaml keys without a comment above: {undocumented}"


def _schema_nodes(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _schema_nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _schema_nodes(value)


def test_chart_crd_uses_openapi_v3_0_exclusive_bounds() -> None:
    """An API server rejects the whole CRD for a JSON-Schema-2020 numeric exclusiveMinimum."""
    crd = yaml.safe_load((CHART / "files" / "crd.yaml").read_text())
    bounds = [
        (key, node[key])
        for node in _schema_nodes(crd)
        for key in ("exclusiveMinimum", "exclusiveMaximum")
        if key in node
    ]
    assert bounds, "the API has exclusive bounds (e.g. http.timeoutSeconds > 0)"
    assert all(value is True for _, value in bounds), bounds


# --------------------------------------------------------------------------- helm


@pytest.fixture(scope="module")
def helm() -> str:
    return need_helm()


def test_the_cluster_helm_assumes_the_cluster_kubernetes_version(tmp_path: Path) -> None:
    """hack/cluster/build.sh links helm with helm's Kubernetes-version ldflags: offline
    `helm template` and `helm lint` then assume the cluster's version, not v1.20."""
    built = _cluster_helm()
    if not built.is_file():
        missing_tool(f"no helm in hack/cluster's build cache ({built})")
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (chart / "templates" / "version.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: version}\n"
        "data: {kubeVersion: {{ .Capabilities.KubeVersion.Version | quote }}}\n"
    )
    result = _run_helm(str(built), "template", "probe", str(chart))
    assert result.returncode == 0, result.stderr
    major, minor = KUBE_VERSION.removeprefix("v").split(".")[:2]
    assert yaml.safe_load(result.stdout)["data"]["kubeVersion"] == f"v{major}.{minor}.0"


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return dict(container)


def _rules(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


NAMESPACED_GRANTS = {
    ("duckherd.io", "datapipelines"): {"get", "list", "watch", "patch"},
    ("duckherd.io", "datapipelines/status"): {"get", "patch", "update"},
    ("", "configmaps"): {"get", "list", "watch", "create", "patch", "update"},
    ("", "persistentvolumeclaims"): {"get", "list", "watch", "create", "patch", "update"},
    ("batch", "cronjobs"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
CRD_GRANTS = {("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"}}


@pytest.mark.parametrize(
    "flags",
    [
        (),
        tuple(
            f"--set=metrics.{part}.enabled=true"
            for part in ("serviceMonitor", "prometheusRule", "grafanaDashboard")
        ),
    ],
    ids=["defaults", "monitoring"],
)
def test_helm_lint_strict_is_clean(helm: str, flags: tuple[str, ...]) -> None:
    result = _run_helm(helm, "lint", "--strict", *KUBE_FLAGS, *flags, str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_crd_is_the_generated_one_kept_on_uninstall(helm: str) -> None:
    crd = _one(_render(helm), "CustomResourceDefinition")
    generated = build_crd()
    assert crd["spec"] == generated["spec"]
    assert crd["metadata"]["name"] == "datapipelines.duckherd.io"
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_crd_can_be_left_out_or_left_unkept(helm: str) -> None:
    assert not [
        d for d in _render(helm, "--set", "crds.enabled=false") if d["kind"].startswith("Custom")
    ]
    crd = _one(_render(helm, "--set", "crds.keep=false"), "CustomResourceDefinition")
    assert "annotations" not in crd["metadata"]


def test_operator_deployment_is_single_recreate_and_restricted(helm: str) -> None:
    docs = _render(helm)
    deployment = _one(docs, "Deployment", "demo-duckherd")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "demo-duckherd"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = _container(docs)
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert {"name": "healthz", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert container["resources"]["requests"] == {"cpu": "250m", "memory": "128Mi"}
    assert container["command"] == ["duckherd", "operator"]
    assert container["args"] == ["--liveness=http://0.0.0.0:8080/healthz", "--metrics-port=9090"]


def test_stage_pods_get_the_operator_image(helm: str) -> None:
    container = _container(
        _render(helm, "--set", "image.repository=localhost/duckherd", "--set", "image.tag=dev")
    )
    env = {entry["name"]: entry.get("value") for entry in container["env"]}
    assert container["image"] == "localhost/duckherd:dev"
    # The names the operator reads (duckherd.contract): a rename on one side fails here.
    assert env[ENV_IMAGE] == "localhost/duckherd:dev"
    assert env[ENV_IMAGE_PULL_POLICY] == "IfNotPresent"


def test_stage_pods_get_the_chart_default_resources(
    helm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chart's stagePods.resources is the operator's built-in default, handed over as
    DUCKHERD_STAGE_RESOURCES; the operator reads back exactly what the chart renders."""

    def handed_over(*flags: str) -> dict[str, Any]:
        env = {e["name"]: e.get("value") for e in _container(_render(helm, *flags))["env"]}
        monkeypatch.setenv(ENV_STAGE_RESOURCES, env[ENV_STAGE_RESOURCES])
        return stage_resources()

    assert handed_over() == DEFAULT_STAGE_RESOURCES
    assert handed_over(
        "--set", "stagePods.resources.requests.cpu=1", "--set", "stagePods.resources.limits=null"
    ) == {"requests": {"cpu": "1", "memory": "512Mi"}}


def test_image_tag_defaults_to_app_version_and_digest_pins(helm: str) -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert _container(_render(helm))["image"] == f"ghcr.io/duckherd/duckherd:{app_version}"
    digest = "sha256:" + "a" * 64
    pinned = _container(_render(helm, "--set", f"image.digest={digest}"))
    assert pinned["image"] == f"ghcr.io/duckherd/duckherd@{digest}"


def test_cluster_wide_rbac_is_least_privilege(helm: str) -> None:
    docs = _render(helm)
    assert not [doc for doc in docs if doc["kind"] in {"Role", "RoleBinding"}]
    granted = _rules(_one(docs, "ClusterRole"))
    # Cluster-wide, Kopf does not observe namespaces: no grant on them.
    assert granted == {**NAMESPACED_GRANTS, **CRD_GRANTS}
    binding = _one(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == "demo-duckherd"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "demo-duckherd", "namespace": "duckherd"}
    ]


def test_namespaced_rbac_grants_only_the_watched_namespaces(helm: str) -> None:
    docs = _render(helm, "--set", "watchNamespaces={team-a,team-b}")
    roles = [doc for doc in docs if doc["kind"] == "Role"]
    bindings = [doc for doc in docs if doc["kind"] == "RoleBinding"]
    assert sorted(role["metadata"]["namespace"] for role in roles) == ["team-a", "team-b"]
    assert sorted(binding["metadata"]["namespace"] for binding in bindings) == ["team-a", "team-b"]
    for role in roles:
        assert _rules(role) == NAMESPACED_GRANTS
    discovery = _one(docs, "ClusterRole", "demo-duckherd-discovery")
    assert _rules(discovery) == {**CRD_GRANTS, ("", "namespaces"): {"list", "watch"}}
    binding = _one(docs, "ClusterRoleBinding", "demo-duckherd-discovery")
    assert binding["roleRef"]["name"] == "demo-duckherd-discovery"
    args = _container(docs)["args"]
    assert "--namespace=team-a" in args
    assert "--namespace=team-b" in args


def _secret_rules(docs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(role, rule) of every rule that grants anything on Secrets (or on everything)."""
    return [
        (doc, rule)
        for doc in docs
        if doc["kind"] in {"ClusterRole", "Role"}
        for rule in doc["rules"]
        if {"secrets", "*"} & set(rule["resources"])
    ]


def test_no_rule_mentions_secrets(helm: str) -> None:
    for flags in ((), ("--set", "watchNamespaces={team-a}")):
        assert _secret_rules(_render(helm, *flags)) == []


@pytest.mark.parametrize("flags", [(), ("--set", "watchNamespaces={team-a}")])
def test_notifications_get_the_one_webhook_secret_by_name_only(
    helm: str, flags: tuple[str, ...]
) -> None:
    docs = _render(helm, "--set", "notifications.webhook.secretName=team-webhook", *flags)
    ((role, rule),) = _secret_rules(docs)
    assert role["kind"] == "Role" and role["metadata"]["namespace"] == "duckherd"
    assert rule == {
        "apiGroups": [""],
        "resources": ["secrets"],
        "resourceNames": ["team-webhook"],
        "verbs": ["get"],
    }
    binding = _one(docs, "RoleBinding", role["metadata"]["name"])
    assert binding["metadata"]["namespace"] == "duckherd"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "demo-duckherd", "namespace": "duckherd"}
    ]
    args = _container(docs)["args"]
    assert "--notify-secret=duckherd/team-webhook" in args
    assert "--notify-secret-key=url" in args
    assert "--notify-format=slack" in args


def test_notifications_are_off_by_default(helm: str) -> None:
    docs = _render(helm)
    assert not [arg for arg in _container(docs)["args"] if arg.startswith("--notify")]
    assert not [doc for doc in docs if doc["kind"] in {"Role", "RoleBinding"}]


def test_metrics_service_and_port_follow_the_values(helm: str) -> None:
    docs = _render(helm, "--set", "metrics.port=9100")
    service = _one(docs, "Service", "demo-duckherd-metrics")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9100, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert (
        service["spec"]["selector"] == (_one(docs, "Deployment")["spec"]["selector"]["matchLabels"])
    )
    assert "--metrics-port=9100" in _container(docs)["args"]
    disabled = _render(helm, "--set", "metrics.enabled=false")
    assert not [doc for doc in disabled if doc["kind"] == "Service"]
    assert "--metrics-port=0" in _container(disabled)["args"]


def test_service_monitor_selects_the_metrics_service(helm: str) -> None:
    assert not [d for d in _render(helm) if d["kind"] == "ServiceMonitor"], "off by default"
    docs = _render(
        helm,
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.serviceMonitor.labels.release=prom",
    )
    monitor = _one(docs, "ServiceMonitor")
    service = _one(docs, "Service", "demo-duckherd-metrics")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s", "honorLabels": True}
    ]
    assert monitor["metadata"]["labels"]["release"] == "prom"


def test_every_resource_carries_the_standard_labels(helm: str) -> None:
    monitoring = [
        f"--set=metrics.{part}.enabled=true"
        for part in ("serviceMonitor", "prometheusRule", "grafanaDashboard")
    ]
    for doc in _render(
        helm, "--set", "commonLabels.team=data", "--set", "demoSource.enabled=true", *monitoring
    ):
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "duckherd", doc["kind"]
        assert labels["app.kubernetes.io/instance"] == "demo", doc["kind"]
        assert labels["team"] == "data", doc["kind"]


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [
        (("--set", "image.pullPolicy=Sometimes"), "pullPolicy"),
        (("--set", "imagee.tag=x"), "imagee"),
        (("--set", "metrics.port=70000"), "port"),
        (("--set", "watchNamespaces={Team_A}"), "watchNamespaces"),
        (("--set", "serviceAccount.create=false"), "serviceAccount.name is required"),
        (("--set", "notifications.webhook.format=xml"), "format"),
        (("--set", "notifications.webhook.secretName=Not_A_Name"), "secretName"),
    ],
)
def test_bad_values_are_rejected_naming_the_key(
    helm: str, flags: tuple[str, ...], complaint: str
) -> None:
    result = _run_helm(helm, "template", "demo", str(CHART), *KUBE_FLAGS, *flags)
    assert result.returncode != 0
    assert complaint in result.stderr


def _render_notes(helm: str, tmp_path: Path, *flags: str) -> str:
    """NOTES.txt as `helm install` prints it, rendered offline by `helm template`.

    `helm install --dry-run` cannot take --kube-version, so the notes are rendered through a
    ConfigMap template added to a copy of the chart, with the chart's own helpers.
    """
    chart = tmp_path / "duckherd"
    shutil.copytree(CHART, chart)
    (chart / "templates/NOTES.txt").rename(chart / "files/notes.txt")
    (chart / "templates/notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n"
        '  notes: {{ tpl (.Files.Get "files/notes.txt") . | quote }}\n'
    )
    result = _run_helm(
        helm, "template", "demo", str(chart), "--namespace=duckherd", *KUBE_FLAGS, *flags
    )
    assert result.returncode == 0, result.stderr
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return str(_one(docs, "ConfigMap", "notes")["data"]["notes"])


def test_notes_tell_how_to_apply_the_example(helm: str, tmp_path: Path) -> None:
    notes = _render_notes(helm, tmp_path)
    assert "kubectl apply -n duckherd -f examples/customer-analytics/pipeline.yaml" in notes
    assert "--reuse-values --set demoSource.enabled=true" in notes, "how to get the demo API"
    assert "kubectl get -n duckherd datapipelines" in notes
    assert "kubectl -n duckherd rollout status deployment/demo-duckherd" in notes
    assert "every namespace" in notes
    with_demo = _render_notes(helm, tmp_path / "demo", "--set", "demoSource.enabled=true")
    assert "demoSource.enabled=true   # the demo API" not in with_demo


def test_notes_name_the_watched_namespaces(helm: str, tmp_path: Path) -> None:
    notes = _render_notes(helm, tmp_path, "--set", "watchNamespaces={team-a,team-b}")
    assert "manages DataPipelines in: team-a, team-b" in notes
    assert "kubectl apply -n team-a -f examples/customer-analytics/pipeline.yaml" in notes


EXAMPLE_SOURCE_URL = "http://duckherd-demo-source:8765/customers"


def test_demo_source_is_off_by_default(helm: str) -> None:
    assert not [d for d in _render(helm) if "demo-source" in d["metadata"]["name"]]


def test_demo_source_runs_the_operator_image_where_the_example_calls_it(helm: str) -> None:
    """The example's pipeline.yaml calls the Service by name: the chart serves that name, on
    that port, with the image the operator runs (the one image an install has)."""
    docs = _render(
        helm, "--set", "demoSource.enabled=true", "--set", "image.repository=registry/duckherd"
    )
    example = yaml.safe_load((REPO_ROOT / "examples/customer-analytics/pipeline.yaml").read_text())
    assert example["spec"]["sources"][0]["http"]["url"] == EXAMPLE_SOURCE_URL
    service = _one(docs, "Service", "duckherd-demo-source")
    assert service["metadata"]["namespace"] == "duckherd"
    assert [p["port"] for p in service["spec"]["ports"]] == [8765]
    deployment = _one(docs, "Deployment", "duckherd-demo-source")
    pod = deployment["spec"]["template"]["spec"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == selector
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    operator = _one(docs, "Deployment", "demo-duckherd")
    assert not selector.items() <= operator["spec"]["template"]["metadata"]["labels"].items()
    (container,) = pod["containers"]
    assert container["image"] == "registry/duckherd:0.1.0"
    assert container["image"] == operator["spec"]["template"]["spec"]["containers"][0]["image"]
    assert container["args"][0] == "demo-source"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False


@pytest.mark.parametrize(
    ("flags", "namespace"),
    [
        ((), "duckherd"),
        (("--set", "watchNamespaces={team-a,team-b}"), "team-a"),
        (("--set", "demoSource.namespace=shop", "--set", "watchNamespaces={team-a}"), "shop"),
    ],
)
def test_demo_source_goes_where_the_notes_apply_the_example(
    helm: str, tmp_path: Path, flags: tuple[str, ...], namespace: str
) -> None:
    docs = _render(helm, "--set", "demoSource.enabled=true", *flags)
    assert _one(docs, "Service", "duckherd-demo-source")["metadata"]["namespace"] == namespace
    notes = _render_notes(helm, tmp_path, "--set", "demoSource.enabled=true", *flags)
    assert f"kubectl apply -n {namespace} -f examples/customer-analytics/pipeline.yaml" in notes
