"""The chart's namespaced mode: the operator watches `watchNamespaces` only, with Roles there.

The grants are proven sufficient by the operator doing its work in the watched namespace
(children applied, status written), and limited by the API server's authorization answers
elsewhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.conftest import Cluster, kubectl_json, wait_until
from tests.e2e.operator_support import (
    Operator,
    apply_manifest,
    can_i,
    delete_namespace,
    ensure_restricted_namespace,
    exists,
    get_pipeline,
    installed_operator,
    load_example,
)

pytestmark = pytest.mark.e2e

Kubectl = Callable[..., str]


@pytest.fixture(scope="module")
def watched(cluster: Cluster) -> Iterator[str]:
    name = f"e2e-watched-{uuid.uuid4().hex[:6]}"
    ensure_restricted_namespace(name)
    yield name
    delete_namespace(name)


@pytest.fixture(scope="module")
def operator(cluster: Cluster, watched: str) -> Iterator[Operator]:
    with installed_operator(cluster, values=(f"watchNamespaces={{{watched}}}",)) as installed:
        yield installed


def test_operator_is_started_for_the_watched_namespace_only(
    operator: Operator, watched: str
) -> None:
    deployment = kubectl_json("get", "deployment", operator.fullname, "-n", operator.namespace)
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--namespace={watched}" in args
    assert exists("role", operator.fullname, watched)
    assert not exists("clusterrole", operator.fullname, "default")
    assert exists("clusterrole", f"{operator.fullname}-discovery", "default")


def test_roles_suffice_for_the_operator_in_the_watched_namespace(
    operator: Operator, watched: str, kubectl: Kubectl
) -> None:
    manifest = load_example("http://127.0.0.1:9")
    apply_manifest(manifest, watched)
    name = manifest["metadata"]["name"]
    wait_until(
        "children and status written by the namespaced operator",
        lambda: (
            exists("cronjob", f"{name}-ingest", watched)
            and exists("configmap", f"{name}-spec", watched)
            and get_pipeline(watched, name).get("status", {}).get("observedGeneration") == 1
        ),
        timeout=120,
    )
    assert "forbidden" not in operator.logs().lower(), "the Roles lack a grant"
    # Deleted while the operator runs (it holds Kopf's finalizer on the pipeline).
    kubectl("delete", "datapipeline", name, "-n", watched, "--timeout=120s")


def test_operator_has_no_rights_outside_the_watched_namespace(
    operator: Operator, watched: str, namespace: str, kubectl: Kubectl
) -> None:
    sa = operator.service_account
    assert can_i(sa, "list", "datapipelines.duckherd.io", watched)
    for verb, resource in [
        ("list", "datapipelines.duckherd.io"),
        ("create", "cronjobs.batch"),
        ("watch", "pods"),
        ("create", "events"),
    ]:
        assert not can_i(sa, verb, resource, namespace), f"{verb} {resource}"
    assert can_i(sa, "watch", "namespaces", "default"), "Kopf observes the watched namespaces"
    assert not can_i(sa, "get", "namespaces", "default")
    assert not can_i(sa, "get", "secrets", watched)
    assert can_i(sa, "watch", "customresourcedefinitions.apiextensions.k8s.io", "default")
