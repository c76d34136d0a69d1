"""The resync reads the watch caches and reconciles only a pipeline with something to write."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from duckherd_operator import acceptance, reconcile
from duckherd_operator.acceptance import Acted
from duckherd_operator.applied import AppliedChildren, manifest_digest
from duckherd_operator.assess import assess
from duckherd_operator.builders import build_children
from duckherd_operator.client import KubeClient
from duckherd_operator.handlers import resync
from duckherd_operator.handlers.caches import Caches, cached_pipeline
from duckherd_operator.pipeline_metrics import RunHistory, ScheduleClock, render
from duckherd_operator.validation import parse_pipeline
from tests.unit.manifests import manifest

NS = "shop-ns"


def _body(**spec: Any) -> dict[str, Any]:
    body = manifest()
    body["spec"].update(spec)
    body["metadata"].update(namespace=NS, uid="u1", generation=1)
    return body


def _children(body: dict[str, Any]) -> list[dict[str, Any]]:
    pipeline = parse_pipeline(body).pipeline
    assert pipeline is not None
    return build_children(pipeline)


def _caches(body: dict[str, Any], children: list[tuple[str, str, str]]) -> Caches:
    key = (NS, body["metadata"]["name"])
    return Caches(pipelines={key: [body]}, jobs={}, pods={}, children=({key: children},))


def _settled(body: dict[str, Any], applied: AppliedChildren) -> list[tuple[str, str, str]]:
    """Every child applied, answered with resourceVersion "7", and cached at that version."""
    cached = []
    for child in _children(body):
        applied.record(child, {"metadata": {"resourceVersion": "7"}})
        cached.append((child["kind"], child["metadata"]["name"], "7"))
    return cached


class NoApi:
    """A client the resync must not use: any call fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the resync called the API ({name}) for a pipeline at rest")


def test_a_note_holds_only_for_the_same_manifest_at_the_same_version() -> None:
    applied = AppliedChildren()
    body = _body()
    pipeline = parse_pipeline(body).pipeline
    assert pipeline is not None
    live = {(kind, name): version for kind, name, version in _settled(body, AppliedChildren())}
    assert applied.drifted(pipeline, live)  # never applied by this process
    _settled(body, applied)
    assert not applied.drifted(pipeline, live)
    (first, *_) = live
    assert applied.drifted(pipeline, {**live, first: "8"})  # someone (or a controller) changed it
    assert applied.drifted(pipeline, {k: v for k, v in live.items() if k != first})  # it is gone
    child = _children(body)[0]
    changed = {**child, "data": {"other": "x"}}
    assert manifest_digest(changed) != manifest_digest(child)
    other = parse_pipeline(_body(schedule="5 4 * * *")).pipeline
    assert other is not None and applied.drifted(other, live)  # the spec builds it differently


def test_children_drift_is_read_from_the_caches(monkeypatch: Any) -> None:
    applied = AppliedChildren()
    monkeypatch.setattr(resync, "APPLIED", applied)
    body = _body()
    cached = _settled(body, applied)
    assert not resync.children_drifted(body, _caches(body, cached))
    assert resync.children_drifted(body, _caches(body, cached[1:]))  # one was deleted
    edited = [(kind, name, "8" if kind == "CronJob" else v) for kind, name, v in cached]
    assert resync.children_drifted(body, _caches(body, edited))
    assert resync.children_drifted(_body(schedule="5 4 * * *"), _caches(body, cached))


def _at_rest(monkeypatch: Any) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """A pipeline whose children were applied and cached, with the status that pass wrote."""
    applied = AppliedChildren()
    monkeypatch.setattr(resync, "APPLIED", applied)
    body = _body()
    cached = _settled(body, applied)
    written = assess(body, [], [], datetime.now(UTC), Acted(generation=1, problem=None))
    body["status"] = written.status.model_dump(mode="json", exclude_none=True)
    return body, cached


async def test_a_pipeline_at_rest_costs_no_request(monkeypatch: Any) -> None:
    body, cached = _at_rest(monkeypatch)
    client: Any = NoApi()
    assert await resync.resync_pipeline(client, body, _caches(body, cached)) == "quiet"
    assert isinstance(client, NoApi) and not isinstance(client, KubeClient)


class HeldApply:
    """A client whose applies wait until released; the pipeline then reads as deleted."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.applies = 0

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.applies += 1
        await self.release.wait()
        return {"metadata": {"resourceVersion": "1"}}

    async def get(self, path: str) -> None:
        return None


async def test_the_resync_leaves_a_pipeline_to_its_pending_apply_pass(monkeypatch: Any) -> None:
    """After a restart every pipeline's pass waits for an apply slot; the resync must not
    queue a second one behind each (its round would wait for the whole backlog)."""
    body, cached = _at_rest(monkeypatch)
    monkeypatch.setattr(acceptance, "APPLIED", AppliedChildren())  # the held pass's notes
    drifted = _caches(body, cached[1:])  # a child is missing: the resync would re-apply
    client = HeldApply()
    held: Any = client
    pass_ = asyncio.create_task(reconcile.reconcile_body(held, body))
    while not client.applies:
        await asyncio.sleep(0)
    assert reconcile.apply_pending(NS, "shop")
    none: Any = NoApi()
    assert await resync.resync_pipeline(none, body, drifted) == "pending"
    client.release.set()
    await pass_
    assert not reconcile.apply_pending(NS, "shop")
    with pytest.raises(AssertionError, match="called the API"):
        await resync.resync_pipeline(none, body, drifted)


def _as_the_api_sends_it(body: dict[str, Any]) -> dict[str, Any]:
    """`body` with what the API server and clients add: annotations and managedFields."""
    metadata = {
        **body["metadata"],
        "resourceVersion": "9",
        "creationTimestamp": "2026-12-02T12:00:00Z",
        "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": json.dumps(body),
            "kopf.duckherd.io/last-handled-configuration": json.dumps({"spec": body["spec"]}),
        },
        "managedFields": [{"manager": "kubectl-client-side-apply", "fieldsV1": {"f:spec": {}}}],
    }
    return {**body, "metadata": metadata}


async def test_the_cache_keeps_only_what_the_operator_reads_of_a_pipeline(
    monkeypatch: Any,
) -> None:
    body, cached_children = _at_rest(monkeypatch)
    sent = _as_the_api_sends_it(body)
    kept = cached_pipeline(sent)
    spec = sent["spec"]
    assert kept == {
        "metadata": {"name": "shop", "namespace": NS, "uid": "u1", "generation": 1},
        "spec": {key: spec[key] for key in ("schedule", "timeZone", "freshness") if key in spec},
        "status": sent["status"],
        "parsed": parse_pipeline(sent),
    }
    assert kept["status"] is sent["status"]  # not copied
    assert kept["parsed"] is parse_pipeline(sent)  # one parse per spec, kept once
    assert parse_pipeline(kept) is kept["parsed"]  # a cached body is answered with its parse
    # The resync and the per-pipeline metrics read the kept parts as they read the object.
    client: Any = NoApi()
    assert await resync.resync_pipeline(client, kept, _caches(kept, cached_children)) == "quiet"
    now, history, clock = datetime.now(UTC), RunHistory(), ScheduleClock()
    assert b"".join(render([kept], history, now, clock)) == b"".join(
        render([sent], history, now, clock)
    )
