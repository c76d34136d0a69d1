"""The kinds whose Kopf events keep only metadata are read by nothing else (caches.py)."""

from __future__ import annotations

import copy
from typing import Any

import kopf
import pytest
from kopf._cogs.structs import references

import duckherd_operator.handlers  # noqa: F401  (registers the handlers)
from duckherd_operator.handlers.caches import METADATA_ONLY_KINDS
from duckherd_operator.kopf_slim_events import slim

REGISTRY = kopf.get_default_registry()


def resource(kind: tuple[str, str, str]) -> references.Resource:
    group, version, plural = kind
    return references.Resource(group=group, version=version, plural=plural, namespaced=True)


def child(kind: tuple[str, str, str]) -> dict[str, Any]:
    """A child as the API server sends it (abridged), with what metadata-only drops."""
    return {
        "apiVersion": "v1",
        "kind": kind[2],
        "metadata": {
            "name": "orders-ingest",
            "namespace": "shop",
            "uid": "0f9b",
            "resourceVersion": "42",
            "labels": {
                "app.kubernetes.io/managed-by": "duckherd",
                "duckherd.io/pipeline": "orders",
            },
            "managedFields": [{"manager": "duckherd", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {}}},
        "data": {"profiles.yml": "duckherd: {}"},
        "status": {"phase": "Bound"},
    }


@pytest.mark.parametrize("kind", METADATA_ONLY_KINDS)
def test_no_handler_but_an_index_reads_a_metadata_only_kind(kind: tuple[str, str, str]) -> None:
    assert REGISTRY._indexing.has_handlers(resource(kind))
    others = (REGISTRY._watching, REGISTRY._spawning, REGISTRY._changing, REGISTRY._webhooks)
    assert not any(registry.has_handlers(resource(kind)) for registry in others)


@pytest.mark.parametrize("kind", METADATA_ONLY_KINDS)
async def test_the_index_of_a_metadata_only_kind_is_the_same_from_its_metadata(
    kind: tuple[str, str, str],
) -> None:
    full = child(kind)
    trimmed = copy.deepcopy(full)
    slim({"type": None, "object": trimmed}, metadata_only=True)
    assert set(trimmed) == {"apiVersion", "kind", "metadata"}
    assert "managedFields" not in trimmed["metadata"]

    handlers = [
        handler
        for handler in REGISTRY._indexing.get_all_handlers()
        if handler.selector is not None and handler.selector.check(resource(kind))
    ]
    assert handlers
    for handler in handlers:
        assert await index(handler, trimmed) == await index(handler, full)


async def index(handler: Any, raw: dict[str, Any]) -> Any:
    body = kopf.Body(raw)  # type: ignore[arg-type]  # a RawBody is a TypedDict
    return await handler.fn(
        namespace=body.metadata.namespace,
        name=body.metadata.name,
        labels=body.metadata.labels,
        meta=body.metadata,
        body=body,
        spec=body.spec,
        status=body.status,
    )
