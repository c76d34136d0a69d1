"""Watch caches (Kopf indexes) of the pipelines and everything the operator made for them.

Kopf keeps one watch per resource kind and hands the indexes to every handler; the resync
reads them instead of the API, so a fleet at rest costs no requests. Values are trimmed to
what the assessment reads (a stage Pod's full spec is never needed, nor a pipeline's
annotations and managedFields): the indexes are most of what a fleet costs in memory.

The index functions are coroutines although they await nothing: Kopf runs a plain function
in its thread pool, one hop per watch event, and a fleet's events are many; these only copy a
few fields, which the event loop does faster than a thread hand-off (and no thread pool's
malloc arenas are filled by them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from duckherd.api import GROUP, PLURAL, VERSION
from duckherd.contract import LABEL_PIPELINE
from duckherd_operator.builders import MANAGER
from duckherd_operator.pipeline_metrics import METRICS_SPEC_FIELDS
from duckherd_operator.validation import CACHED_PARSE, parse_pipeline

MANAGED: dict[str, Any] = {
    "app.kubernetes.io/managed-by": MANAGER,
    LABEL_PIPELINE: kopf.PRESENT,
}
# The same, as the API server's label selector: the watches of these kinds carry only what
# Duckherd made, not every ConfigMap or Pod of the namespaces served.
MANAGED_SELECTOR = f"app.kubernetes.io/managed-by={MANAGER},{LABEL_PIPELINE}"
MANAGED_KINDS = (
    ("batch", "v1", "jobs"),
    ("batch", "v1", "cronjobs"),
    ("", "v1", "pods"),
    ("", "v1", "configmaps"),
    ("", "v1", "persistentvolumeclaims"),
)


# The kinds whose one handler is an index below that reads metadata alone (name, labels,
# resourceVersion): Kopf's events of them keep only their metadata (kopf_slim_events.py), so a
# restart does not hold every CronJob's pod template and ConfigMap's data at once. Add another
# handler of these kinds and tests/unit/test_caches.py fails: take the kind out of this list.
METADATA_ONLY_KINDS = (
    ("batch", "v1", "cronjobs"),
    ("", "v1", "configmaps"),
    ("", "v1", "persistentvolumeclaims"),
)


def watch_only_managed(settings: kopf.OperatorSettings) -> None:
    for kind in MANAGED_KINDS:
        settings.watching.label_selectors[kind] = MANAGED_SELECTOR


_Key = tuple[str | None, str]  # namespace, pipeline name


# What the resync (validation, assessment) and the per-pipeline metrics read of a pipeline.
PIPELINE_METADATA = ("name", "namespace", "uid", "generation")


def cached_pipeline(body: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a pipeline object the operator reads from the cache: identity, status,
    the spec's parse (validation.parse_pipeline answers with it) and the few spec fields the
    metrics read. Not the spec itself: its parse holds the same, and the dicts as the API
    sends them are half as large again. Nor its annotations (`kubectl apply`'s copy of the
    manifest, Kopf's copy of the spec) and managedFields: those are most of an object's size
    as the API sends it."""
    metadata = body.get("metadata") or {}
    spec = body.get("spec") or {}
    return {
        "metadata": {key: metadata[key] for key in PIPELINE_METADATA if key in metadata},
        "spec": {key: spec[key] for key in METRICS_SPEC_FIELDS if key in spec},
        "status": body.get("status") or {},
        CACHED_PARSE: parse_pipeline(dict(body)),
    }


@kopf.index(GROUP, VERSION, PLURAL)
async def pipeline_objects(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[_Key, dict[str, Any]]:
    return {(namespace, name): cached_pipeline(body)}


def _owner(namespace: str | None, labels: kopf.Labels) -> _Key:
    return namespace, labels[LABEL_PIPELINE]


@kopf.index("batch", "v1", "jobs", labels=MANAGED)
async def stage_jobs(
    namespace: str | None, labels: kopf.Labels, meta: kopf.Meta, status: kopf.Status, **_: Any
) -> dict[_Key, dict[str, Any]]:
    metadata = {
        "name": meta.name,
        "labels": dict(labels),
        "annotations": dict(meta.annotations),
        "creationTimestamp": meta.creation_timestamp,
    }
    return {_owner(namespace, labels): {"metadata": metadata, "status": dict(status)}}


@kopf.index("", "v1", "pods", labels=MANAGED)
async def stage_pods(
    namespace: str | None, labels: kopf.Labels, meta: kopf.Meta, status: kopf.Status, **_: Any
) -> dict[_Key, dict[str, Any]]:
    scheduled = [c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"]
    trimmed = {"containerStatuses": status.get("containerStatuses") or [], "conditions": scheduled}
    metadata = {"name": meta.name, "labels": dict(labels)}
    return {_owner(namespace, labels): {"metadata": metadata, "status": trimmed}}


def _child(namespace: str | None, labels: kopf.Labels, meta: kopf.Meta, kind: str) -> Any:
    return {_owner(namespace, labels): (kind, meta.name, meta.get("resourceVersion"))}


@kopf.index("", "v1", "configmaps", labels=MANAGED)
async def child_configmaps(
    namespace: str | None, labels: kopf.Labels, meta: kopf.Meta, **_: Any
) -> dict[_Key, tuple[str, str, str]]:
    result: dict[_Key, tuple[str, str, str]] = _child(namespace, labels, meta, "ConfigMap")
    return result


@kopf.index("", "v1", "persistentvolumeclaims", labels=MANAGED)
async def child_claims(
    namespace: str | None, labels: kopf.Labels, meta: kopf.Meta, **_: Any
) -> dict[_Key, tuple[str, str, str]]:
    result: dict[_Key, tuple[str, str, str]] = _child(
        namespace, labels, meta, "PersistentVolumeClaim"
    )
    return result


@kopf.index("batch", "v1", "cronjobs", labels=MANAGED)
async def child_cronjobs(
    namespace: str | None, labels: kopf.Labels, meta: kopf.Meta, **_: Any
) -> dict[_Key, tuple[str, str, str]]:
    result: dict[_Key, tuple[str, str, str]] = _child(namespace, labels, meta, "CronJob")
    return result


def _values(index: Mapping[_Key, Iterable[Any]], key: _Key) -> list[Any]:
    return list(index.get(key, ()))


@dataclass(frozen=True)
class Caches:
    """The indexes, as Kopf passes them to handlers (live views, updated by the watches)."""

    pipelines: Mapping[_Key, Iterable[dict[str, Any]]]
    jobs: Mapping[_Key, Iterable[dict[str, Any]]]
    pods: Mapping[_Key, Iterable[dict[str, Any]]]
    children: tuple[Mapping[_Key, Iterable[tuple[str, str, str]]], ...]

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> Caches:
        return cls(
            pipelines=kwargs["pipeline_objects"],
            jobs=kwargs["stage_jobs"],
            pods=kwargs["stage_pods"],
            children=(
                kwargs["child_configmaps"],
                kwargs["child_claims"],
                kwargs["child_cronjobs"],
            ),
        )

    def pipeline_bodies(self) -> list[dict[str, Any]]:
        return [body for store in list(self.pipelines.values()) for body in list(store)]

    def jobs_of(self, key: _Key) -> list[dict[str, Any]]:
        return _values(self.jobs, key)

    def pods_of(self, key: _Key) -> list[dict[str, Any]]:
        return _values(self.pods, key)

    def child_versions(self, key: _Key) -> dict[tuple[str, str], str]:
        """(kind, name) → resourceVersion of each child the watches show."""
        return {
            (kind, name): version
            for index in self.children
            for kind, name, version in _values(index, key)
        }
