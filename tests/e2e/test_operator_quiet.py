"""Quiet at rest: with nothing changing, the operator sends the API server no writes.

The API server counts the requests it dispatches per FlowSchema (API Priority and Fairness,
`apiserver_flowcontrol_dispatched_requests_total`). Two FlowSchemas that match only the
operator's ServiceAccount — one for the write verbs, one for the reads — turn those counters
into the operator's own request counts, as the API server saw them. The window is measured in
the operator's own resync rounds (`duckherd_resync_rounds_total`), not in seconds: it covers
two full rounds over every pipeline.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Cluster, kubectl, wait_until
from tests.e2e.operator_support import (
    Operator,
    apply_manifest,
    delete_namespace,
    ensure_restricted_namespace,
    get_pipeline,
    installed_operator,
    load_example,
)

pytestmark = pytest.mark.e2e

PIPELINES = 3
WRITES = ["create", "update", "patch", "delete", "deletecollection"]
READS = ["get", "list", "watch"]
# One resync round is 30 s; settling and the window are a few rounds each.
ROUNDS_TIMEOUT = 300.0
ROUNDS_METRIC = "duckherd_resync_rounds_total"


def _flow_schema(name: str, operator: Operator, verbs: list[str], precedence: int) -> Any:
    account = {"name": operator.fullname, "namespace": operator.namespace}
    return {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": name, "labels": {"duckherd.io/e2e": "true"}},
        "spec": {
            # Below the built-in exempt/probes/leader-election schemas, above the rest.
            "matchingPrecedence": precedence,
            "priorityLevelConfiguration": {"name": "workload-high"},
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [
                {
                    "subjects": [{"kind": "ServiceAccount", "serviceAccount": account}],
                    "resourceRules": [
                        {
                            "verbs": verbs,
                            "apiGroups": ["*"],
                            "resources": ["*"],
                            "namespaces": ["*"],
                            "clusterScope": True,
                        }
                    ],
                }
            ],
        },
    }


def _dispatched(flow_schema: str) -> float:
    """Requests the API server dispatched under `flow_schema`, all priority levels."""
    text = kubectl("get", "--raw", "/metrics")
    pattern = re.compile(
        r'^apiserver_flowcontrol_dispatched_requests_total\{[^}]*flow_schema="'
        + re.escape(flow_schema)
        + r'"[^}]*\}\s+(\S+)$',
        re.MULTILINE,
    )
    return sum(float(value) for value in pattern.findall(text))


def _operator_metric(operator: Operator, name: str) -> float:
    path = (
        f"/api/v1/namespaces/{operator.namespace}/services/"
        f"{operator.fullname}-metrics:metrics/proxy/metrics"
    )
    text = kubectl("get", "--raw", path, check=False)
    found = re.search(rf"^{re.escape(name)}\s+(\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else -1.0


@pytest.fixture(scope="module")
def operator(cluster: Cluster) -> Iterator[Operator]:
    with installed_operator(cluster) as installed:
        yield installed


@pytest.fixture(scope="module")
def schemas(operator: Operator) -> Iterator[tuple[str, str]]:
    suffix = uuid.uuid4().hex[:6]
    writes, reads = f"duckherd-e2e-writes-{suffix}", f"duckherd-e2e-reads-{suffix}"
    items = [
        _flow_schema(writes, operator, WRITES, 200),
        _flow_schema(reads, operator, READS, 201),
    ]
    kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )
    yield writes, reads
    kubectl("delete", "flowschema", writes, reads, "--ignore-not-found", check=False)


def _observed(namespace: str, name: str) -> bool:
    status = get_pipeline(namespace, name).get("status", {})
    return bool(status.get("observedGeneration") == 1)


@pytest.fixture(scope="module")
def fleet(operator: Operator, schemas: tuple[str, str]) -> Iterator[str]:
    """A handful of pipelines that never run in the window (a yearly schedule), settled."""
    namespace = f"e2e-quiet-{uuid.uuid4().hex[:6]}"
    ensure_restricted_namespace(namespace)
    names = [f"quiet-{index}" for index in range(PIPELINES)]
    for name in names:
        manifest = load_example("http://127.0.0.1:9/customers")  # never fetched here
        manifest["metadata"]["name"] = name
        manifest["spec"]["schedule"] = "0 0 1 1 *"
        apply_manifest(manifest, namespace)
    wait_until(
        "status of every pipeline",
        lambda: all(_observed(namespace, name) for name in names),
        timeout=180,
    )
    yield namespace
    kubectl("delete", "datapipelines", "--all", "-n", namespace, "--timeout=120s", check=False)
    delete_namespace(namespace)


def _rounds_after(operator: Operator, start: float, rounds: int) -> float:
    """Waits until the operator has finished `rounds` more resync rounds; the count then."""
    wait_until(
        f"{rounds} resync rounds",
        lambda: _operator_metric(operator, ROUNDS_METRIC) >= start + rounds,
        timeout=ROUNDS_TIMEOUT,
        interval=2,
    )
    return _operator_metric(operator, ROUNDS_METRIC)


def test_the_operator_writes_nothing_at_rest(
    operator: Operator, schemas: tuple[str, str], fleet: str
) -> None:
    writes, reads = schemas
    # The schemas see the operator: creating the fleet was written through them.
    assert _dispatched(writes) > 0
    # Settle: two full rounds after the fleet exists (a PVC that bound is applied once more).
    rounds = _rounds_after(operator, _operator_metric(operator, ROUNDS_METRIC), 2)
    writes_before, reads_before = _dispatched(writes), _dispatched(reads)
    _rounds_after(operator, rounds, 2)
    written, read = _dispatched(writes) - writes_before, _dispatched(reads) - reads_before
    print(
        f"[e2e measurement] operator requests over 2 resync rounds at rest: {written:.0f} "
        f"writes, {read:.0f} reads (watches included), {PIPELINES} pipelines"
    )
    assert written == 0
