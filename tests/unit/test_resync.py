"""The resync reads the watch caches and reconciles only a pipeline with something to write."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from duckherd_operator.acceptance import Acted
from duckherd_operator.applied import AppliedChildren, manifest_digest
from duckherd_operator.assess import assess
from duckherd_operator.builders import build_children
from duckherd_operator.client import KubeClient
from duckherd_operator.handlers import resync
from duckherd_operator.handlers.caches import Caches
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


async def test_a_pipeline_at_rest_costs_no_request(monkeypatch: Any) -> None:
    applied = AppliedChildren()
    monkeypatch.setattr(resync, "APPLIED", applied)
    body = _body()
    cached = _settled(body, applied)
    # The status the pass that applied generation 1 wrote.
    written = assess(body, [], [], datetime.now(UTC), Acted(generation=1, problem=None))
    body["status"] = written.status.model_dump(mode="json", exclude_none=True)
    client: Any = NoApi()
    assert await resync.resync_pipeline(client, body, _caches(body, cached)) == "quiet"
    assert isinstance(client, NoApi) and not isinstance(client, KubeClient)
