"""kopf_slim_events: Kopf's own watch loop yields its objects without managedFields."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Iterator
from typing import Any

import kopf
import pytest
from kopf._cogs.clients import fetching, watching
from kopf._cogs.structs import references

from duckherd_operator import kopf_slim_events
from duckherd_operator.kopf_slim_events import slim_events

CRONJOBS = references.Resource(
    group="batch",
    version="v1",
    plural="cronjobs",
    namespaced=True,
    verbs=frozenset({"list", "watch"}),
)


def cronjob(name: str, version: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "resourceVersion": version,
            "labels": {"duckherd.io/pipeline": "orders"},
            "managedFields": [{"manager": "duckherd", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"schedule": "0 * * * *"},
    }


@pytest.fixture(autouse=True)
def patched() -> Iterator[None]:
    original = watching.continuous_watch
    slim_events()
    slim_events()  # idempotent: wraps once
    assert watching.continuous_watch.__wrapped__ is original  # type: ignore[attr-defined]
    yield
    watching.continuous_watch = original
    kopf_slim_events._METADATA_ONLY.clear()


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Kopf's list and watch calls answer two listed CronJobs, then one watch event that ends
    the stream; returns the objects as the API server sent them."""
    listed = [cronjob("a", "1"), cronjob("b", "1")]
    modified: dict[str, Any] = {"type": "MODIFIED", "object": cronjob("a", "2")}
    sent: list[dict[str, Any]] = copy.deepcopy([*listed, modified["object"]])

    async def fetch_objs(**_: Any) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        yield listed, "1"

    async def watch_objs(
        *, operator_pause_waiter: asyncio.Future[None], **_: Any
    ) -> AsyncIterator[dict[str, Any]]:
        yield modified
        operator_pause_waiter.cancel()  # ends Kopf's watch loop after this event

    monkeypatch.setattr(fetching, "fetch_objs", fetch_objs)
    monkeypatch.setattr(watching, "watch_objs", watch_objs)
    return sent


async def watched() -> list[Any]:
    """What Kopf's own watch loop yields for CronJobs, once."""
    stream = watching.infinite_watch(
        settings=kopf.OperatorSettings(),
        resource=CRONJOBS,
        namespace=references.NamespaceName("ns"),
        _iterations=1,
    )
    return [item async for item in stream]


async def test_kopf_yields_listed_and_watched_objects_without_managed_fields(
    api: list[dict[str, Any]],
) -> None:
    items = await watched()

    events = [item for item in items if isinstance(item, dict)]
    assert watching.Bookmark.LISTED in items
    assert [event["type"] for event in events] == [None, None, "MODIFIED"]
    for event, sent in zip(events, api, strict=True):
        assert "managedFields" in sent["metadata"]
        del sent["metadata"]["managedFields"]
        assert event["object"] == sent  # everything else as sent


async def test_a_metadata_only_kind_keeps_its_metadata_alone(
    api: list[dict[str, Any]],
) -> None:
    slim_events([("batch", "v1", "cronjobs")])
    events = [item for item in await watched() if isinstance(item, dict)]

    assert [event["type"] for event in events] == [None, None, "MODIFIED"]
    for event, sent in zip(events, api, strict=True):
        del sent["metadata"]["managedFields"]
        assert event["object"] == {key: sent[key] for key in ("apiVersion", "kind", "metadata")}


def test_a_changed_kopf_is_refused_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    async def continuous_watch(*, settings: Any, resource: Any) -> AsyncIterator[Any]:
        yield None

    monkeypatch.setattr(watching, "continuous_watch", continuous_watch)
    with pytest.raises(RuntimeError, match="continuous_watch has changed"):
        slim_events()
