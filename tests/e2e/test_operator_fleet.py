"""Many runs at once, and an operator restart in the middle of them (issue 11, items 4 and 5).

Eight pipelines of the example's shape (ingest, then the dbt transform; no checks or publish,
to keep the test short) are started at the same moment. The chart gives stage pods a CPU
request of a quarter of the node's allocatable CPU, so the node runs at most four at once
(the default requests do the same on a larger scale: docs/operations.md): the others wait
Pending, and their pipelines' status shows the stage `Waiting` with the scheduler's reason,
not failed. While the runs are mid-chain the operator Pod is deleted; its replacement picks
the runs up. Every run completes, with exactly one Job per stage, and status converges.

The big versions (50 runs, 20 restarted runs, 1,000 pipelines) are benchmarks/bench_fleet.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from duckherd_jobs.demo_source import DemoSource
from duckherd_operator.builders import DEFAULT_STAGE_RESOURCES, run_now_job_name
from tests.e2e.conftest import Cluster, kubectl, kubectl_json, wait_until
from tests.e2e.operator_support import (
    RUN_TIMEOUT,
    Operator,
    apply_manifest,
    condition,
    delete_namespace,
    ensure_restricted_namespace,
    installed_operator,
    jobs_of_run,
    load_example,
    stage_jobs,
)

pytestmark = pytest.mark.e2e

PIPELINES = 8
CUSTOMERS = 500
STAGES = ["ingest", "transform"]


def _node_cpu_millis() -> int:
    (node,) = kubectl_json("get", "nodes")["items"]
    cpu = str(node["status"]["allocatable"]["cpu"])
    return int(cpu[:-1]) if cpu.endswith("m") else int(float(cpu) * 1000)


@pytest.fixture(scope="module")
def stage_cpu(cluster: Cluster) -> str:
    """A quarter of the node's CPU: at most four stage pods run at once, whatever the node."""
    return f"{_node_cpu_millis() // 4}m"


@pytest.fixture(scope="module")
def operator(cluster: Cluster, stage_cpu: str) -> Iterator[Operator]:
    values = (f"stagePods.resources.requests.cpu={stage_cpu}",)
    with installed_operator(cluster, values=values) as installed:
        yield installed


@pytest.fixture(scope="module")
def demo_api(cluster: Cluster) -> Iterator[str]:
    with DemoSource(CUSTOMERS, host=cluster.need_host_ip()) as url:
        yield url


@pytest.fixture(scope="module")
def fleet(operator: Operator, demo_api: str) -> Iterator[tuple[str, list[str]]]:
    namespace = f"e2e-fleet-{uuid.uuid4().hex[:6]}"
    ensure_restricted_namespace(namespace)
    names = [f"fleet-{index}" for index in range(PIPELINES)]
    for name in names:
        manifest = load_example(demo_api)
        manifest["metadata"]["name"] = name
        for stage_field in ("quality", "metrics"):  # either adds a check stage
            manifest["spec"].pop(stage_field, None)
        apply_manifest(manifest, namespace)
    wait_until(
        "status of every pipeline",
        lambda: (
            all(
                (p.get("status") or {}).get("observedGeneration") == 1
                for p in _pipelines(namespace)
            )
            and len(_pipelines(namespace)) == PIPELINES
        ),
        timeout=240,
    )
    yield namespace, names
    kubectl("delete", "datapipelines", "--all", "-n", namespace, "--timeout=120s", check=False)
    delete_namespace(namespace)


def _pipelines(namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl_json("get", "datapipelines", "-n", namespace)["items"]
    return items


def _waiting_stages(pipelines: list[dict[str, Any]]) -> list[str]:
    """Messages of stages that status shows waiting for a node."""
    return [
        stage.get("message") or ""
        for pipeline in pipelines
        for stage in ((pipeline.get("status") or {}).get("lastRun") or {}).get("stages", [])
        if stage["result"] == "Waiting"
    ]


def _results(pipelines: list[dict[str, Any]]) -> dict[str, str | None]:
    return {
        p["metadata"]["name"]: ((p.get("status") or {}).get("lastRun") or {}).get("result")
        for p in pipelines
    }


def test_many_runs_wait_for_room_and_survive_an_operator_restart(
    operator: Operator, fleet: tuple[str, list[str]], stage_cpu: str
) -> None:
    namespace, names = fleet
    value = uuid.uuid4().hex
    runs = {name: run_now_job_name(name, value) for name in names}
    kubectl(
        "annotate",
        "-n",
        namespace,
        *[f"datapipeline/{name}" for name in names],
        f"duckherd.io/run-now={value}",
        "--overwrite",
    )

    # More stage pods than the node has room for: the excess waits, and status says so.
    waiting: list[str] = wait_until(
        "a stage shown Waiting for a node",
        lambda: _waiting_stages(_pipelines(namespace)),
        timeout=RUN_TIMEOUT,
    )
    assert all("waiting for a node" in message for message in waiting), waiting
    assert any("Insufficient cpu" in message for message in waiting), waiting
    assert not [r for r in _results(_pipelines(namespace)).values() if r == "Failed"]

    # Mid-chain: one run's transform exists while another run has not finished its ingest.
    def mid_chain() -> bool:
        by_run = [jobs_of_run(namespace, name, run) for name, run in runs.items()]
        return any("transform" in jobs for jobs in by_run) and any(
            "transform" not in jobs for jobs in by_run
        )

    wait_until("runs mid-chain", mid_chain, timeout=RUN_TIMEOUT, interval=2)
    doomed = operator.ready_pod()
    kubectl("delete", "pod", doomed, "-n", operator.namespace, "--wait=false")

    def all_finished() -> list[dict[str, Any]] | None:
        pipelines = _pipelines(namespace)
        done = all(r not in (None, "Running") for r in _results(pipelines).values())
        last_ids = {
            p["metadata"]["name"]: ((p.get("status") or {}).get("lastRun") or {}).get("id")
            for p in pipelines
        }
        return pipelines if done and last_ids == runs else None

    pipelines = wait_until("every run finished", all_finished, timeout=2 * RUN_TIMEOUT, interval=3)
    assert operator.ready_pod() != doomed

    for pipeline in pipelines:
        name, status = pipeline["metadata"]["name"], pipeline["status"]
        jobs = jobs_of_run(namespace, name, runs[name])
        assert {stage: len(found) for stage, found in jobs.items()} == dict.fromkeys(STAGES, 1), (
            name,
            jobs,
        )
        last = status["lastRun"]
        assert last["result"] == "Succeeded", (name, last)
        assert [(s["stage"], s["result"]) for s in last["stages"]] == [
            (stage, "Succeeded") for stage in STAGES
        ]
        rows = {t["name"]: t["rows"] for t in status["tables"]}
        assert rows["raw.customers"] == CUSTOMERS, (name, rows)
        assert condition(pipeline, "DataReady")["status"] == "True"  # type: ignore[index]
        assert condition(pipeline, "Ready")["status"] == "True"  # type: ignore[index]

    # Stage pods carried the requests (the chart's CPU, the built-in memory and limit).
    job = stage_jobs(namespace, names[0])[0]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {
        "requests": {"cpu": stage_cpu, "memory": DEFAULT_STAGE_RESOURCES["requests"]["memory"]},
        "limits": DEFAULT_STAGE_RESOURCES["limits"],
    }
