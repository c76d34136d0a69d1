"""A rotated service-account token is picked up without a restart.

kubelet rotates the projected token file of a pod long before the token expires (at 80 % of
its life, an hour by default), too slowly for a test, and the token it replaces stays valid, so
a client that never re-read the file would not be caught. The test makes both fast and strict:

- the operator's service-account folder is a Secret volume the test writes (kubelet updates
  a Secret volume the way it updates a projected one: an atomic symlink swap), holding a token
  the test requested, bound to a Secret object (`kubectl create token --bound-object-kind`);
- after the rotation the old token is revoked by deleting the object it is bound to, and the
  API server's own TokenReview confirms it no longer authenticates;
- then a spec edit must still reach the children and status: those writes are made by the
  operator's API client (Kopf does not touch them), in the same pod, never restarted.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Cluster, kubectl, kubectl_json, wait_until
from tests.e2e.operator_support import (
    Operator,
    apply_manifest,
    delete_namespace,
    ensure_restricted_namespace,
    get_pipeline,
    installed_operator,
    load_example,
    with_changes,
)

pytestmark = pytest.mark.e2e

NAME = "customer-analytics"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SA_SECRET = "operator-service-account"
# kubelet refreshes Secret volumes on its sync loop (about a minute, plus its cache), and the
# client re-reads the file a minute after its last read at most: generous, polled.
ROTATION_TIMEOUT = 420.0


def _request_token(operator: Operator, holder: str) -> str:
    """A token of the operator's ServiceAccount, valid while Secret `holder` exists."""
    kubectl("create", "secret", "generic", holder, "-n", operator.namespace)
    return kubectl(
        "create",
        "token",
        operator.fullname,
        "-n",
        operator.namespace,
        "--bound-object-kind=Secret",
        f"--bound-object-name={holder}",
        "--duration=1h",
    ).strip()


def _write_service_account_folder(operator: Operator, token: str) -> None:
    ca = kubectl_json("get", "configmap", "kube-root-ca.crt", "-n", operator.namespace)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SA_SECRET, "namespace": operator.namespace},
        "stringData": {
            "token": token,
            "ca.crt": ca["data"]["ca.crt"],
            "namespace": operator.namespace,
        },
    }
    kubectl("apply", "-f", "-", input=json.dumps(secret))


def _mount_the_folder(operator: Operator) -> None:
    """The operator Deployment reads its service-account folder from the test's Secret."""
    patch = [
        {
            "op": "replace",
            "path": "/spec/template/spec/automountServiceAccountToken",
            "value": False,
        },
        {
            "op": "add",
            "path": "/spec/template/spec/volumes/-",
            "value": {"name": "service-account", "secret": {"secretName": SA_SECRET}},
        },
        {
            "op": "add",
            "path": "/spec/template/spec/containers/0/volumeMounts/-",
            "value": {"name": "service-account", "mountPath": SA_DIR, "readOnly": True},
        },
    ]
    kubectl(
        "patch",
        "deployment",
        operator.fullname,
        "-n",
        operator.namespace,
        "--type=json",
        "-p",
        json.dumps(patch),
    )


def _authenticates(token: str) -> bool:
    review = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token},
    }
    answer = json.loads(kubectl("create", "-f", "-", "-o", "json", input=json.dumps(review)))
    return bool(answer.get("status", {}).get("authenticated"))


def _mounted_token(operator: Operator, pod: str) -> str:
    return kubectl(
        "exec",
        "-n",
        operator.namespace,
        pod,
        "--",
        "python",
        "-c",
        f"print(open('{SA_DIR}/token').read(), end='')",
    )


def _operator_pod(operator: Operator) -> dict[str, Any]:
    name = operator.ready_pod()
    pod: dict[str, Any] = kubectl_json("get", "pod", name, "-n", operator.namespace)
    return pod


@pytest.fixture(scope="module")
def operator(cluster: Cluster) -> Iterator[Operator]:
    with installed_operator(cluster) as installed:
        yield installed


@pytest.fixture(scope="module")
def pipeline_namespace(operator: Operator) -> Iterator[str]:
    name = f"e2e-rotation-{uuid.uuid4().hex[:6]}"
    ensure_restricted_namespace(name)
    yield name
    kubectl("delete", "datapipelines", "--all", "-n", name, "--timeout=120s", check=False)
    delete_namespace(name)


def test_a_rotated_token_is_used_without_a_restart(
    operator: Operator, pipeline_namespace: str
) -> None:
    first = _request_token(operator, "token-holder-first")
    _write_service_account_folder(operator, first)
    _mount_the_folder(operator)
    wait_until(
        "the operator Pod reading the test's service-account folder",
        lambda: _mounted_token(operator, operator.ready_pod()) == first,
        timeout=240,
        interval=2,
    )
    pod = _operator_pod(operator)
    pod_name = pod["metadata"]["name"]
    assert pod["spec"]["automountServiceAccountToken"] is False

    # Works with the first token: children applied, status written.
    manifest = load_example("http://127.0.0.1:9")  # never run here
    apply_manifest(manifest, pipeline_namespace)
    wait_until(
        "status of generation 1",
        lambda: (
            get_pipeline(pipeline_namespace, NAME).get("status", {}).get("observedGeneration") == 1
        ),
        timeout=180,
        interval=1,
    )

    # Rotate: the second token goes into the file, then the first one stops authenticating.
    second = _request_token(operator, "token-holder-second")
    _write_service_account_folder(operator, second)
    wait_until(
        "kubelet writing the second token into the operator Pod",
        lambda: _mounted_token(operator, pod_name) == second,
        timeout=ROTATION_TIMEOUT,
        interval=2,
    )
    kubectl("delete", "secret", "token-holder-first", "-n", operator.namespace)
    wait_until("the first token revoked", lambda: not _authenticates(first), timeout=60)
    assert _authenticates(second)

    # A spec edit after the revocation: only a client that read the new token can apply it.
    schedule = "17 3 * * *"
    apply_manifest(with_changes(manifest, schedule=schedule), pipeline_namespace)

    def edit_applied() -> bool:
        cronjob = kubectl_json("get", "cronjob", f"{NAME}-ingest", "-n", pipeline_namespace)
        status = get_pipeline(pipeline_namespace, NAME).get("status", {})
        return bool(
            cronjob["spec"]["schedule"] == schedule and status.get("observedGeneration") == 2
        )

    wait_until("the edit applied with the second token", edit_applied, timeout=ROTATION_TIMEOUT)

    after = _operator_pod(operator)
    assert after["metadata"]["name"] == pod_name
    assert after["status"]["containerStatuses"][0]["restartCount"] == 0
