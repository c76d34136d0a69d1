"""The chart's namespaced mode: the operator watches `watchNamespaces` only, with Roles there.

The grants are proven sufficient by the operator doing its work in the watched namespace
(children applied, status written), and limited by the API server's authorization answers
elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.e2e.conftest import Cluster, kubectl_json, wait_until
from tests.e2e.operator_support import (
    Operator,
    apply_manifest,
    can_i,
    exists,
    get_pipeline,
    installed_operator,
    load_example,
)

pytestmark = pytest.mark.e2e

Kubectl = Callable[..., str]


@pytest.fixture(scope="module")
def operator(cluster: Cluster, watched_namespace: str) -> Iterator[Operator]:
    values = (f"watchNamespaces={{{watched_namespace}}}",)
    with installed_operator(cluster, values=values) as installed:
        yield installed


def test_operator_is_started_for_the_watched_namespace_only(
    operator: Operator, watched_namespace: str
) -> None:
    deployment = kubectl_json("get", "deployment", operator.fullname, "-n", operator.namespace)
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--namespace={watched_namespace}" in args
    assert exists("role", operator.fullname, watched_namespace)
    assert not exists("clusterrole", operator.fullname, "default")
    assert exists("clusterrole", f"{operator.fullname}-discovery", "default")


def test_roles_suffice_for_the_operator_in_the_watched_namespace(
    operator: Operator, watched_namespace: str, kubectl: Kubectl
) -> None:
    ns = watched_namespace
    manifest = load_example("http://127.0.0.1:9")
    apply_manifest(manifest, ns)
    name = manifest["metadata"]["name"]
    wait_until(
        "children and status written by the namespaced operator",
        lambda: (
            exists("cronjob", f"{name}-ingest", ns)
            and exists("configmap", f"{name}-spec", ns)
            and get_pipeline(ns, name).get("status", {}).get("observedGeneration") == 1
        ),
        timeout=120,
    )
    assert "forbidden" not in operator.logs().lower(), "the Roles lack a grant"
    # Deleted while the operator runs (it holds Kopf's finalizer on the pipeline).
    kubectl("delete", "datapipeline", name, "-n", ns, "--timeout=120s")


def test_operator_has_no_rights_outside_the_watched_namespace(
    operator: Operator, watched_namespace: str, namespace: str, kubectl: Kubectl
) -> None:
    sa = operator.service_account
    assert can_i(sa, "list", "datapipelines.duckherd.io", watched_namespace)
    for verb, resource in [
        ("list", "datapipelines.duckherd.io"),
        ("create", "cronjobs.batch"),
        ("watch", "pods"),
        ("create", "events"),
    ]:
        assert not can_i(sa, verb, resource, namespace), f"{verb} {resource}"
    assert can_i(sa, "watch", "namespaces", "default"), "Kopf observes the watched namespaces"
    assert not can_i(sa, "get", "namespaces", "default")
    assert not can_i(sa, "get", "secrets", watched_namespace)
    assert can_i(sa, "watch", "customresourcedefinitions.apiextensions.k8s.io", "default")
