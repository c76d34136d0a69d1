"""Where the operator's memory goes per pipeline, without a cluster (docs/fleet.md, P1).

    python -m benchmarks.profile_fleet_memory            # N = 1000
    PROFILE_FLEET_SIZE=300 python -m benchmarks.profile_fleet_memory

Feeds N pipelines of the example's shape, as the API server would send them (client-side
`kubectl apply` annotations, managedFields, the status the operator writes), and their five
children each, through what the operator keeps while it runs: Kopf's per-object memories and
the Kopf index functions (handlers/caches.py, through Kopf's own indexing), the validation
cache (validation.py), the applied-children digests (applied.py) and the per-pipeline locks;
then one /metrics render. `tracemalloc` counts what each part keeps (and the render's peak),
and the largest allocation sites are printed. The process's resident memory after importing
the operator (what it costs before any pipeline) is printed first.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import json
import logging
import os
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

SIZE = int(os.environ.get("PROFILE_FLEET_SIZE", "1000"))
NAMESPACE = "fleet"
MIB = 2**20
TOP = 12


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# ------------------------------------------------------------------ bodies as the API sends them


def _has_type(item: Any) -> bool:
    return isinstance(item, dict) and "type" in item


def fields_v1(value: Any) -> Any:
    """A managedFields FieldsV1 tree of `value` (lists are atomic, conditions keyed by type)."""
    if isinstance(value, dict):
        return {f"f:{key}": fields_v1(item) for key, item in value.items()}
    if isinstance(value, list) and value and all(_has_type(item) for item in value):
        return {f'k:{{"type":"{item["type"]}"}}': {".": {}, **fields_v1(item)} for item in value}
    return {}


def managed(manager: str, fields: dict[str, Any], subresource: str | None = None) -> Any:
    entry = {
        "manager": manager,
        "operation": "Update",
        "apiVersion": "duckherd.io/v1alpha1",
        "time": "2026-12-02T12:00:00Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    }
    return {**entry, "subresource": subresource} if subresource else entry


def api_pipeline(manifest: dict[str, Any], status: dict[str, Any], index: int) -> dict[str, Any]:
    """`manifest` as the API server returns it after `kubectl apply`, Kopf's annotation and
    the operator's status patch."""
    body = copy.deepcopy(manifest)
    last_applied = json.dumps(manifest, separators=(",", ":")) + "\n"
    handled = json.dumps({"spec": manifest["spec"]}, separators=(",", ":"))
    annotations = {
        "kubectl.kubernetes.io/last-applied-configuration": last_applied,
        "kopf.duckherd.io/last-handled-configuration": handled,
    }
    body["metadata"].update(
        namespace=NAMESPACE,
        uid=str(uuid.uuid4()),
        resourceVersion=str(100000 + index),
        generation=1,
        creationTimestamp="2026-12-02T12:00:00Z",
        annotations=annotations,
        managedFields=[
            managed(
                "kubectl-client-side-apply",
                {
                    "f:metadata": {"f:annotations": {".": {}, **fields_v1(annotations)}},
                    "f:spec": fields_v1(manifest["spec"]),
                },
            ),
            managed("kopf", {"f:metadata": {"f:annotations": fields_v1(annotations)}}),
            managed("duckherd-operator", {"f:status": fields_v1(status)}, "status"),
        ],
    )
    body["status"] = copy.deepcopy(status)
    return body


def api_child(child: dict[str, Any], index: int) -> dict[str, Any]:
    body = copy.deepcopy(child)
    body["metadata"].update(
        uid=str(uuid.uuid4()),
        resourceVersion=str(200000 + index),
        creationTimestamp="2026-12-02T12:00:00Z",
        managedFields=[managed("duckherd-operator", fields_v1(child.get("spec") or {}))],
    )
    return body


def fleet_bodies(size: int) -> tuple[list[Any], list[Any], list[Any]]:
    """N pipelines (with the status the operator writes at rest), their children as the
    operator builds them, and as the API server returns them."""
    from benchmarks.bench_fleet import fleet_pipelines
    from duckherd_operator.assess import assess
    from duckherd_operator.builders import build_children
    from duckherd_operator.validation import forget_parsed, parse_pipeline

    pipelines, built, children = [], [], []
    for index, manifest in enumerate(fleet_pipelines(size, "http://10.0.0.1:8765")):
        manifest["metadata"]["namespace"] = NAMESPACE
        body = api_pipeline(manifest, {}, index)
        status = assess(body, [], [], datetime.now(UTC)).status
        body = api_pipeline(manifest, status.model_dump(mode="json", exclude_none=True), index)
        pipelines.append(body)
        parsed = parse_pipeline(body).pipeline
        assert parsed is not None
        for child in build_children(parsed):
            built.append(child)
            children.append(api_child(child, index))
    forget_parsed(set())
    return pipelines, built, children


# ------------------------------------------------------------------ what the operator keeps


class Kept:
    """What each fed part keeps, by tracemalloc's count after it (and the top sites)."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, float, float]] = []

    def measure(self, name: str, feed: Callable[[], Any]) -> Any:
        gc.collect()
        tracemalloc.reset_peak()
        before = tracemalloc.take_snapshot()
        start, _ = tracemalloc.get_traced_memory()
        result = feed()
        gc.collect()
        end, peak = tracemalloc.get_traced_memory()
        self.parts.append((name, (end - start) / MIB, (peak - start) / MIB))
        after = tracemalloc.take_snapshot()
        print(f"\n{name}: keeps {(end - start) / MIB:.1f} MiB (peak +{(peak - start) / MIB:.1f})")
        for stat in after.compare_to(before, "lineno")[:TOP]:
            if stat.size_diff > 64 * 1024:
                frame = stat.traceback[0]
                where = f"{os.path.relpath(frame.filename)}:{frame.lineno}"
                print(f"  {stat.size_diff / MIB:7.2f} MiB {stat.count_diff:>8} blocks  {where}")
        return result


def kopf_feed(registry: Any, pipelines: list[Any], children: list[Any]) -> Any:
    """Kopf's per-object memories and indexes, fed as its watch would (one ADDED event per
    object), with the operator's registered index handlers."""
    import kopf
    from kopf._cogs.structs import bodies, ephemera, references
    from kopf._core.engines import indexing
    from kopf._core.reactor import inventory

    from duckherd_operator.context import new_memo

    settings = kopf.OperatorSettings()
    memories = inventory.ResourceMemories()
    indexers = indexing.OperatorIndexers()
    indexers.ensure(registry._indexing.get_all_handlers())
    memobase = ephemera.AnyMemo(new_memo())
    logger = logging.getLogger("profile")

    def resource_of(body: dict[str, Any]) -> references.Resource:
        group, _, version = body["apiVersion"].rpartition("/")
        plural = {
            "DataPipeline": "datapipelines",
            "ConfigMap": "configmaps",
            "PersistentVolumeClaim": "persistentvolumeclaims",
            "CronJob": "cronjobs",
        }[body["kind"]]
        return references.Resource(group, version, plural, namespaced=True)

    async def feed() -> None:
        for raw in [*pipelines, *children]:
            event = {"type": "ADDED", "object": raw}
            memory = await memories.recall(raw, memobase=memobase)
            await indexing.index_resource(
                indexers=indexers,
                registry=registry,
                settings=settings,
                resource=resource_of(raw),
                raw_event=event,  # type: ignore[arg-type]
                body=bodies.Body(raw),
                memo=memory.memo,
                memory=memory.indexing_memory,
                logger=logger,
            )

    asyncio.run(feed())
    return memories, indexers


def main() -> None:
    print(f"RSS before importing the operator: {rss_mib():.0f} MiB")
    import kopf

    import duckherd_operator.handlers  # noqa: F401  (registers the handlers and indexes)
    from duckherd_operator import metrics
    from duckherd_operator.actions import pipeline_lock
    from duckherd_operator.applied import APPLIED
    from duckherd_operator.handlers.caches import Caches
    from duckherd_operator.validation import parse_pipeline

    print(f"RSS after importing the operator (no pipeline yet): {rss_mib():.0f} MiB")
    pipelines, built, children = fleet_bodies(SIZE)
    text = sum(len(json.dumps(b)) for b in pipelines) / len(pipelines)
    print(f"N = {SIZE}: a pipeline object is {text / 1024:.1f} KiB of JSON as the API sends it")

    tracemalloc.start()
    kept = Kept()
    # Bodies are dropped by Kopf after each event: only what the parts keep stays.
    registry = kopf.get_default_registry()
    memories, indexers = kept.measure(
        "Kopf memories + indexes",
        lambda: kopf_feed(registry, copy.deepcopy(pipelines), copy.deepcopy(children)),
    )
    index = indexers.indices
    caches = Caches(
        pipelines=index["pipeline_objects"],
        jobs=index["stage_jobs"],
        pods=index["stage_pods"],
        children=tuple(
            index[name] for name in ("child_configmaps", "child_claims", "child_cronjobs")
        ),
    )
    bodies = caches.pipeline_bodies()
    kept.measure("validation cache", lambda: [parse_pipeline(body) for body in bodies])

    def applied() -> None:
        for manifest, answer in zip(built, children, strict=True):
            APPLIED.record(manifest, answer)
        for body in bodies:
            pipeline = parse_pipeline(body).pipeline
            assert pipeline is not None
            key = (pipeline.namespace, pipeline.name)
            assert not APPLIED.drifted(pipeline, caches.child_versions(key))

    kept.measure("applied digests", applied)

    async def locks() -> list[Any]:
        return [pipeline_lock(NAMESPACE, b["metadata"]["name"]) for b in bodies]

    kept.measure("per-pipeline locks", lambda: asyncio.run(locks()))
    metrics.PIPELINES.attach(caches.pipelines)
    kept.measure("one /metrics render", lambda: sum(len(c) for c in metrics.PIPELINES.render()))

    print(f"\nN = {SIZE}: kept per pipeline (and peak), by part")
    total = 0.0
    for name, size, peak in kept.parts:
        total += size
        per = size * 1024 / SIZE
        print(f"  {name:<28} {size:7.1f} MiB  {per:6.1f} KiB/pipeline  (peak +{peak:.1f} MiB)")
    print(f"  {'all':<28} {total:7.1f} MiB  {total * 1024 / SIZE:6.1f} KiB/pipeline")
    del memories
    tracemalloc.stop()
    print(f"RSS at the end (with tracemalloc's own overhead gone): {rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
