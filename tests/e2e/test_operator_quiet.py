"""Quiet at rest: with nothing changing, the operator sends the API server no writes.

The operator's requests are counted by the API server itself (`counting_requests`: two
FlowSchemas that match only the operator's ServiceAccount, one for the write verbs, one for
the reads). The window is measured in the operator's own resync rounds
(`duckherd_resync_rounds_total`), not in seconds: it covers two full rounds over every pipeline.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Cluster, kubectl, wait_until
from tests.e2e.operator_support import (
    READ_VERBS,
    WRITE_VERBS,
    Operator,
    RequestCounter,
    apply_manifest,
    counting_requests,
    delete_namespace,
    ensure_restricted_namespace,
    get_pipeline,
    installed_operator,
    load_example,
)

pytestmark = pytest.mark.e2e

PIPELINES = 3
# One resync round is 30 s; settling and the window are a few rounds each.
ROUNDS_TIMEOUT = 300.0
ROUNDS_METRIC = "duckherd_resync_rounds_total"


@pytest.fixture(scope="module")
def operator(cluster: Cluster) -> Iterator[Operator]:
    with installed_operator(cluster) as installed:
        yield installed


@pytest.fixture(scope="module")
def requests(operator: Operator) -> Iterator[RequestCounter]:
    with counting_requests(operator, {"writes": WRITE_VERBS, "reads": READ_VERBS}) as counter:
        yield counter


def _observed(namespace: str, name: str) -> bool:
    status = get_pipeline(namespace, name).get("status", {})
    return bool(status.get("observedGeneration") == 1)


@pytest.fixture(scope="module")
def fleet(operator: Operator, requests: RequestCounter) -> Iterator[str]:
    """A handful of pipelines that never run in the window (a yearly schedule), settled."""
    namespace = f"e2e-quiet-{uuid.uuid4().hex[:6]}"
    ensure_restricted_namespace(namespace)
    names = [f"quiet-{index}" for index in range(PIPELINES)]
    for name in names:
        manifest = load_example("http://127.0.0.1:9")  # never fetched here
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
        lambda: operator.metric(ROUNDS_METRIC) >= start + rounds,
        timeout=ROUNDS_TIMEOUT,
        interval=2,
    )
    return operator.metric(ROUNDS_METRIC)


def test_the_operator_writes_nothing_at_rest(
    operator: Operator, requests: RequestCounter, fleet: str
) -> None:
    # The schemas see the operator: creating the fleet was written through them.
    assert requests.counts()["writes"] > 0
    # Settle: two full rounds after the fleet exists (a PVC that bound is applied once more).
    rounds = _rounds_after(operator, operator.metric(ROUNDS_METRIC), 2)
    before = requests.counts()
    _rounds_after(operator, rounds, 2)
    after = requests.counts()
    written, read = after["writes"] - before["writes"], after["reads"] - before["reads"]
    print(
        f"[e2e measurement] operator requests over 2 resync rounds at rest: {written:.0f} "
        f"writes, {read:.0f} reads (watches included), {PIPELINES} pipelines"
    )
    assert written == 0
