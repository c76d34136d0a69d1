"""The real operator (Kopf, our handlers, our API client) against kmock's Kubernetes emulator.

Below e2e and fast: no cluster, no kubelet; kmock serves the API on loopback and keeps the
objects in memory, so a test can set the scene (a pipeline, its children, a finished Job and
its Pod), run the operator, and read back what it wrote. kmock does not run controllers, apply
label selectors or create objects on server-side apply, so the scene holds the children the
operator would have applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import kmock
import kopf
import pytest
import yaml

import duckherd_operator.handlers  # noqa: F401  (registers the handlers, as `duckherd operator` does)
from duckherd.summary import StageSummary
from duckherd_operator.builders import MANAGER, build_children
from duckherd_operator.validation import parse_pipeline
from tests.unit.manifests import manifest

NAMESPACE = "shop-ns"
PIPELINE = "shop"
DEADLINE_SECONDS = 60.0

RESOURCES: dict[str, tuple[str, bool]] = {
    "duckherd.io/v1alpha1/datapipelines": ("DataPipeline", True),
    "batch/v1/jobs": ("Job", True),
    "batch/v1/cronjobs": ("CronJob", True),
    "v1/pods": ("Pod", True),
    "v1/configmaps": ("ConfigMap", True),
    "v1/persistentvolumeclaims": ("PersistentVolumeClaim", True),
    "v1/events": ("Event", True),
    "v1/secrets": ("Secret", True),
    # Kopf observes these at start-up (namespaces, and CRDs for resources that appear later).
    "v1/namespaces": ("Namespace", False),
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False),
}
_PLURALS = {kind: key for key, (kind, _) in RESOURCES.items()}


def declare_resources(server: kmock.KubernetesEmulator) -> None:
    for key, (kind, namespaced) in RESOURCES.items():
        server.resources[key] = kmock.ResourceInfo(
            kind=kind,
            namespaced=namespaced,
            verbs={"list", "watch", "get", "create", "patch"},
            subresources={"status"} if kind == "DataPipeline" else set(),
        )


def put(server: kmock.KubernetesEmulator, obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    server.objects[_PLURALS[obj["kind"]], meta.get("namespace"), meta["name"]] = obj


def pipeline_body(spec_body: dict[str, Any] | None = None) -> dict[str, Any]:
    body = manifest(spec_body)
    body["metadata"].update(namespace=NAMESPACE, uid="pipeline-uid", generation=1)
    return body


def put_pipeline_with_children(
    server: kmock.KubernetesEmulator, spec_body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The pipeline and the children the operator would have applied (uids as the API sets)."""
    body = pipeline_body(spec_body)
    put(server, body)
    pipeline = parse_pipeline(body).pipeline
    assert pipeline is not None
    for child in build_children(pipeline):
        child["metadata"]["uid"] = f"{child['metadata']['name']}-uid"
        put(server, child)
    return body


def stage_job(
    name: str, stage: str, *, run_id: str | None, complete: bool, failed: bool = False
) -> dict[str, Any]:
    labels = {
        "app.kubernetes.io/managed-by": MANAGER,
        "duckherd.io/pipeline": PIPELINE,
        "duckherd.io/stage": stage,
    }
    if run_id:
        labels["duckherd.io/run-id"] = run_id
    status: dict[str, Any] = {"startTime": "2026-11-26T06:00:00Z"}
    if failed:
        status["conditions"] = [{"type": "Failed", "status": "True"}]
    elif complete:
        status["conditions"] = [{"type": "Complete", "status": "True"}]
        status["completionTime"] = "2026-11-26T06:01:00Z"
    else:
        status["active"] = 1
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": labels,
            "creationTimestamp": "2026-11-26T06:00:00Z",
        },
        "status": status,
    }


def finished_pod(job_name: str, stage: str, *, error: str | None = None) -> dict[str, Any]:
    """The Pod of a finished stage Job, its summary in the termination message (a failed one
    with `error`)."""
    summary = StageSummary(stage=stage, ok=error is None, error=error)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{job_name}-abcde",
            "namespace": NAMESPACE,
            "labels": {
                "job-name": job_name,
                "app.kubernetes.io/managed-by": MANAGER,
                "duckherd.io/pipeline": PIPELINE,
            },
        },
        "status": {
            "phase": "Succeeded" if error is None else "Failed",
            "containerStatuses": [
                {
                    "name": "stage",
                    "state": {
                        "terminated": {
                            "exitCode": 0 if error is None else 1,
                            "finishedAt": "2026-11-26T06:01:00Z",
                            "message": summary.model_dump_json(),
                        }
                    },
                }
            ],
        },
    }


def objects_of(server: kmock.KubernetesEmulator, plural: str) -> dict[str, dict[str, Any]]:
    """Live objects of one resource in the test namespace, by name."""
    found = {}
    for (resource, namespace, name), obj in server.objects.items():
        same = str(resource) == str(kmock.resource(plural)) and namespace == NAMESPACE
        if same and not obj.deleted:
            found[name] = dict(obj.raw)
    return found


def pipeline_status(server: kmock.KubernetesEmulator) -> dict[str, Any]:
    status: dict[str, Any] = (
        objects_of(server, "duckherd.io/v1alpha1/datapipelines")[PIPELINE].get("status") or {}
    )
    return status


def posted_events(server: kmock.KubernetesEmulator) -> list[dict[str, Any]]:
    """Every Event the operator sent (kmock keeps one object per name; Kopf's are generated)."""
    return [
        request.data
        for request in list(server)
        if request.method == kmock.method.POST and request.url.path.endswith("/events")
    ]


async def eventually(
    what: str, check: Callable[[], Any], seen: Callable[[], Any] | None = None
) -> Any:
    """Poll until `check()` (a function or a coroutine function) is truthy (the operator works
    in this event loop meanwhile); on time-out the message shows `seen()`, what there was."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            instead = f"; found {dump(seen())}" if seen else ""
            raise AssertionError(
                f"timed out after {DEADLINE_SECONDS:.0f}s waiting for {what}{instead}"
            )
        await asyncio.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_kubeconfig(path: Path, server_url: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": server_url}}],
        "users": [{"name": "tester", "user": {"token": "kmock-token"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "tester"}}],
        "current-context": "kmock",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.asynccontextmanager
async def running_operator(
    server: kmock.KubernetesEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    liveness_port: int | None = None,
    memo: kopf.Memo | None = None,
) -> AsyncIterator[None]:
    """`duckherd operator` (cluster-wide) in this event loop, logged in through a kubeconfig;
    `memo` as `duckherd operator` makes it (context.new_memo) for its options."""
    declare_resources(server)
    url = str(server.url).rstrip("/")
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", url)))
    stop = asyncio.Event()
    ready = asyncio.Event()
    liveness = f"http://127.0.0.1:{liveness_port}/healthz" if liveness_port else None
    task = asyncio.create_task(
        kopf.operator(
            standalone=True,
            clusterwide=True,
            stop_flag=stop,
            ready_flag=ready,
            liveness_endpoint=liveness,
            memo=memo,
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), DEADLINE_SECONDS)
        await eventually("the operator watching DataPipelines", lambda: _watching(server))
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, DEADLINE_SECONDS)


def _watching(server: kmock.KubernetesEmulator) -> bool:
    return any(
        request.params.get("watch") == "true" and request.url.path.endswith("/datapipelines")
        for request in list(server)
    )


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)[:4000]
