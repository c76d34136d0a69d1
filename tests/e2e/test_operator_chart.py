"""The chart on a real cluster: install, Pod Security, least privilege, CRD upgrade, uninstall.

These tests start no pipeline run (test_operator_pipeline.py does); they check what
`helm install` / `upgrade` / `uninstall` leave on the cluster and what the RBAC allows.
The last test uninstalls the release, so it stays last in this module.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from duckherd.api import SUPPORTED_EXPECTATIONS
from tests.e2e.conftest import Cluster, KubectlError, kubectl_json, wait_until
from tests.e2e.operator_support import (
    CHART,
    CRD_NAME,
    REACTION_TIMEOUT,
    Operator,
    apply_manifest,
    can_i,
    drop_pipeline_finalizers,
    exists,
    get_pipeline,
    helm,
    install_args,
    load_example,
)

pytestmark = pytest.mark.e2e

Kubectl = Callable[..., str]
PIPELINE = "customer-analytics"


def test_operator_runs_ready_in_a_restricted_namespace(
    operator: Operator, kubectl: Kubectl
) -> None:
    labels = kubectl_json("get", "namespace", operator.namespace)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    deployment = kubectl_json("get", "deployment", operator.fullname, "-n", operator.namespace)
    assert deployment["status"]["availableReplicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    pod_name = operator.ready_pod()
    pod = kubectl_json("get", "pod", pod_name, "-n", operator.namespace)
    (container,) = pod["spec"]["containers"]
    assert container["image"] == operator.image
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsUser"] == 10001
    (status,) = pod["status"]["containerStatuses"]
    assert status["restartCount"] == 0, "the operator crashed or failed its liveness probe"
    # The liveness endpoint answers through the API server's pod proxy, as the kubelet sees it.
    health = kubectl(
        "get",
        "--raw",
        f"/api/v1/namespaces/{operator.namespace}/pods/{pod_name}:8080/proxy/healthz",
    )
    assert health.strip()


def test_metrics_service_serves_prometheus_metrics(operator: Operator) -> None:
    metrics = wait_until("the metrics endpoint", operator.metrics, timeout=REACTION_TIMEOUT)
    assert "duckherd_status_patches_total" in metrics


def test_operator_memory_at_rest_is_reported(operator: Operator) -> None:
    rss = operator.rss_bytes()
    print(f"[e2e measurement] operator RSS at rest (no pipelines): {rss / 2**20:.1f} MiB")
    assert 0 < rss < 512 * 2**20, "above the chart's default memory limit"


def test_operator_cannot_touch_secrets(
    operator: Operator, namespace: str, kubectl: Kubectl
) -> None:
    sa = operator.service_account
    for verb in ("get", "list", "watch", "create", "update", "patch", "delete"):
        assert not can_i(sa, verb, "secrets", namespace), f"operator may {verb} secrets"
    # ...while it can do its job (the grants it needs are there).
    assert can_i(sa, "patch", "datapipelines.duckherd.io", namespace)
    assert can_i(sa, "patch", "datapipelines.duckherd.io/status", namespace)
    assert can_i(sa, "create", "cronjobs.batch", namespace)
    assert can_i(sa, "delete", "jobs.batch", namespace)
    assert can_i(sa, "watch", "pods", namespace)
    assert can_i(sa, "create", "events", namespace)
    assert not can_i(sa, "delete", "datapipelines.duckherd.io", namespace)
    assert not can_i(sa, "create", "pods", namespace)
    assert not can_i(sa, "create", "pods/exec", namespace)
    assert not can_i(sa, "delete", "persistentvolumeclaims", namespace)


def test_stage_pods_service_account_can_do_nothing(
    operator: Operator, namespace: str, kubectl: Kubectl
) -> None:
    """Stage pods run as their namespace's `default` ServiceAccount, without a token."""
    stage_sa = f"system:serviceaccount:{namespace}:default"
    for verb, resource in [
        ("get", "secrets"),
        ("list", "secrets"),
        ("get", "configmaps"),
        ("list", "pods"),
        ("create", "jobs.batch"),
        ("get", "datapipelines.duckherd.io"),
        ("patch", "datapipelines.duckherd.io/status"),
        ("create", "events"),
        ("get", "persistentvolumeclaims"),
        ("*", "*"),
    ]:
        assert not can_i(stage_sa, verb, resource, namespace), f"{verb} {resource}"


def test_schema_violation_is_rejected_with_the_field_path(
    operator: Operator, namespace: str, kubectl: Kubectl
) -> None:
    example = load_example("http://127.0.0.1:9")
    bad_enum = json.loads(json.dumps(example))
    bad_enum["spec"]["sources"][0]["writeDisposition"] = "upsert"
    with pytest.raises(
        KubectlError, match=r'spec\.sources\[0\]\.writeDisposition: Unsupported value: "upsert"'
    ):
        apply_manifest(bad_enum, namespace)

    no_key = json.loads(json.dumps(example))
    del no_key["spec"]["sources"][0]["primaryKey"]
    with pytest.raises(
        KubectlError,
        match=r"spec\.sources\[0\]\.primaryKey: .*writeDisposition merge needs a primaryKey",
    ):
        apply_manifest(no_key, namespace)

    no_schedule = json.loads(json.dumps(example))
    del no_schedule["spec"]["schedule"]
    with pytest.raises(KubectlError, match=r"spec\.schedule: Required value"):
        apply_manifest(no_schedule, namespace)
    assert not exists("datapipeline", PIPELINE, namespace)


def test_kubectl_explain_lists_every_supported_expectation(
    operator: Operator, kubectl: Kubectl
) -> None:
    """`kubectl explain` (the served OpenAPI of the installed CRD) names every expectation."""

    def explained() -> str:
        # The CRD's OpenAPI is published a moment after the CRD is established.
        output = kubectl("explain", "datapipeline.spec.quality.checks", check=False)
        return output if "expectation" in output else ""

    output = wait_until("kubectl explain to serve the CRD", explained, timeout=REACTION_TIMEOUT)
    assert set(SUPPORTED_EXPECTATIONS) - set(re.findall(r"\bexpect_[a-z_]+", output)) == set()


def _children_exist(namespace: str, name: str) -> bool:
    return all(
        exists(kind, child, namespace)
        for kind, child in [
            ("configmap", f"{name}-spec"),
            ("pvc", f"{name}-warehouse"),
            ("cronjob", f"{name}-ingest"),
        ]
    )


def _children_of(namespace: str, name: str) -> Callable[[], bool]:
    return lambda: _children_exist(namespace, name)


def _no_children_of(namespace: str, name: str) -> Callable[[], bool]:
    return lambda: (
        not exists("cronjob", f"{name}-ingest", namespace)
        and not exists("configmap", f"{name}-spec", namespace)
    )


def test_pvc_is_kept_on_delete_unless_retain_on_delete_is_false(
    operator: Operator, namespace: str, kubectl: Kubectl
) -> None:
    kept = load_example("http://127.0.0.1:9")
    kept["metadata"]["name"] = "kept"
    dropped = load_example("http://127.0.0.1:9")
    dropped["metadata"]["name"] = "dropped"
    dropped["spec"]["storage"]["retainOnDelete"] = False
    apply_manifest(kept, namespace)
    apply_manifest(dropped, namespace)
    for name in ("kept", "dropped"):
        wait_until(f"children of {name}", _children_of(namespace, name), timeout=120)

    kubectl("delete", "datapipeline", "kept", "dropped", "-n", namespace, "--timeout=120s")
    for name in ("kept", "dropped"):
        wait_until(
            f"{name}'s CronJobs and ConfigMap garbage-collected",
            _no_children_of(namespace, name),
            timeout=120,
        )
    wait_until(
        "dropped-warehouse deleted",
        lambda: not exists("pvc", "dropped-warehouse", namespace),
        timeout=120,
    )
    assert exists("pvc", "kept-warehouse", namespace)
    assert "forbidden" not in operator.logs().lower(), "the ClusterRole lacks a grant"


def test_helm_upgrade_updates_a_changed_crd(
    operator: Operator, cluster: Cluster, tmp_path: Path
) -> None:
    changed_chart = tmp_path / "duckherd"
    shutil.copytree(CHART, changed_chart)
    crd_file = changed_chart / "files" / "crd.yaml"
    crd = yaml.safe_load(crd_file.read_text())
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    columns.append({"name": "Upgraded", "type": "string", "jsonPath": ".spec.timeZone"})
    crd_file.write_text(yaml.safe_dump(crd, sort_keys=False))

    def column_names() -> list[str]:
        served = kubectl_json("get", "crd", CRD_NAME)
        return [c["name"] for c in served["spec"]["versions"][0]["additionalPrinterColumns"]]

    try:
        helm(*install_args(cluster, operator.release, operator.namespace, changed_chart))
        assert "Upgraded" in column_names()
    finally:
        helm(*install_args(cluster, operator.release, operator.namespace, CHART))
    assert "Upgraded" not in column_names()
    operator.ready_pod()


def test_a_pipeline_can_be_deleted_while_the_operator_is_down(
    operator: Operator, namespace: str, kubectl: Kubectl
) -> None:
    """docs/architecture.md: no finalizer that blocks deletes while the operator is down."""
    apply_manifest(load_example("http://127.0.0.1:9"), namespace)
    wait_until("children", lambda: _children_exist(namespace, PIPELINE), timeout=120)
    assert not get_pipeline(namespace, PIPELINE)["metadata"].get("finalizers")
    operator.scale(0)
    try:
        kubectl("delete", "datapipeline", PIPELINE, "-n", namespace, "--timeout=30s")
    finally:
        drop_pipeline_finalizers(namespace)
        operator.scale(1)


def test_helm_uninstall_keeps_the_crd_and_the_data(
    operator: Operator, namespace: str, kubectl: Kubectl
) -> None:
    """Runs last: it uninstalls the module's release."""
    apply_manifest(load_example("http://127.0.0.1:9"), namespace)
    wait_until("children", lambda: _children_exist(namespace, PIPELINE), timeout=120)

    helm("uninstall", operator.release, "--namespace", operator.namespace, "--wait")

    try:
        wait_until(
            "the operator Deployment gone",
            lambda: not exists("deployment", operator.fullname, operator.namespace),
            timeout=120,
        )
        crd = kubectl_json("get", "crd", CRD_NAME)
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert get_pipeline(namespace, PIPELINE)["spec"]["schedule"] == "0 6 * * *"
        assert exists("pvc", f"{PIPELINE}-warehouse", namespace)
        assert not exists("clusterrole", operator.fullname, "default")
    finally:
        drop_pipeline_finalizers(namespace)
