"""Level-based reconciliation of one pipeline: validate, act, observe, report.

Every function here can run any number of times, in any order, after any crash, and
converge: children are server-side applied, chained Jobs have deterministic names, and
status is recomputed from what the cluster holds and patched only when it differs. The
steps live in their own modules: validation.py (the door), acceptance.py (applying a
generation's children), observe.py (pure reading of Jobs and Pods), chain.py (pure
decisions), assess.py (pure: what to do and what status to hold), actions.py (API writes),
report.py (status patch and Events).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from duckherd.api import API_VERSION, KIND
from duckherd.contract import LABEL_PIPELINE
from duckherd_operator import metrics
from duckherd_operator.acceptance import Acted, apply_generation
from duckherd_operator.actions import (
    end_superseded_jobs,
    patch_status,
    perform,
    pipeline_lock,
    post_events,
)
from duckherd_operator.assess import assess
from duckherd_operator.client import KubeClient, collection_path, object_path
from duckherd_operator.per_loop import PerLoop
from duckherd_operator.report import status_patch, transition_notices
from duckherd_operator.validation import parse_pipeline

# Passes that apply children run at most this many at once. After a restart Kopf resumes every
# pipeline of a fleet at the same moment, and each pass holds the pipeline, the children it
# builds and the API's answers while it waits on the API server; the slots bound how many do
# so together. (The restart at N = 1,000 that took 8 minutes was Kopf's readiness wait,
# kopf_toggles.py; this bound was added with that fix and not measured on its own.) Job-event
# syncs (`sync`) take no slot: a finished stage's next step never queues behind a backlog.
APPLY_PASSES_AT_ONCE = 8
_apply_slots: PerLoop[asyncio.Semaphore] = PerLoop(lambda: asyncio.Semaphore(APPLY_PASSES_AT_ONCE))


# Pipelines with a pass that applies children under way or waiting for a slot (a count: a
# handler's and the resync's may overlap).
_applying: PerLoop[Counter[tuple[str, str]]] = PerLoop(Counter)


@contextmanager
def applying(namespace: str, name: str) -> Iterator[None]:
    passes = _applying.get()
    passes[namespace, name] += 1
    try:
        yield
    finally:
        passes[namespace, name] -= 1
        if passes[namespace, name] <= 0:
            del passes[namespace, name]


def apply_pending(namespace: str, name: str) -> bool:
    """A pass that applies this pipeline's children is under way or waiting for a slot: it
    will also bring chain and status up to date. (After a restart, or with a fleet created at
    once, the resync would otherwise queue a second pass behind each of them, and its round
    would wait for the whole backlog.)"""
    return (namespace, name) in _applying.get()


async def reconcile_body(kube: KubeClient, body: dict[str, Any]) -> None:
    """Children follow the spec, then chain and status follow the children (in one of the
    loop's apply slots)."""
    with applying(body["metadata"]["namespace"], body["metadata"]["name"]):
        async with _apply_slots.get():
            await _reconcile_body(kube, body)


async def _reconcile_body(kube: KubeClient, body: dict[str, Any]) -> None:
    with metrics.reconcile_pass():
        parsed = parse_pipeline(body)
        acted = None
        if parsed.pipeline is not None:
            acted = await apply_generation(kube, parsed.pipeline)
        await _sync(kube, body["metadata"]["namespace"], body["metadata"]["name"], acted)
        if acted is not None and acted.error is not None:
            raise acted.error  # transient: status says Reconciling, the caller retries


# The pipelines with a sync waiting for their lock.
_waiting: PerLoop[set[tuple[str, str]]] = PerLoop(set)


async def sync(kube: KubeClient, namespace: str, name: str) -> None:
    """Chain the newest run and bring status up to date. Safe to call at any time.

    Events come in bursts: a stage that ends changes its Job and its Pod several times within
    a second, each a sync of the pipeline, one at a time. A sync that finds another one still
    waiting for the pipeline's lock returns at once: that one reads the cluster after this
    event, so it covers both. A pass is never queued behind more than one other."""
    waiting = _waiting.get()
    key = (namespace, name)
    if key in waiting:
        return
    waiting.add(key)
    started = False
    try:
        async with pipeline_lock(namespace, name):
            waiting.discard(key)
            started = True
            with metrics.reconcile_pass():
                await _sync_locked(kube, namespace, name, None)
    finally:
        if not started:  # cancelled while waiting
            waiting.discard(key)


async def _sync(kube: KubeClient, namespace: str, name: str, acted: Acted | None) -> None:
    async with pipeline_lock(namespace, name):
        await _sync_locked(kube, namespace, name, acted)


async def _sync_locked(kube: KubeClient, namespace: str, name: str, acted: Acted | None) -> None:
    """Under the pipeline's lock: read the pipeline, its Jobs and Pods; act; report."""
    body = await kube.get(object_path(API_VERSION, KIND, namespace, name))
    if body is None:
        return
    selector = f"{LABEL_PIPELINE}={name}"
    jobs = await kube.list(collection_path("batch/v1", "Job", namespace), selector)
    pods = await kube.list(collection_path("v1", "Pod", namespace), selector) if jobs else []
    assessment = assess(body, jobs, pods, datetime.now(UTC), acted)
    if assessment.parsed.pipeline is not None:
        await perform(kube, assessment.parsed.pipeline, assessment.actions)
    # A stuck Job of an older generation is ended rather than held against the current one.
    await end_superseded_jobs(kube, body, assessment.superseded)
    if assessment.status_changed:
        new_dump = assessment.status.model_dump(mode="json", exclude_none=True)
        await patch_status(kube, namespace, name, status_patch(body.get("status") or {}, new_dump))
        metrics.HISTORY.record((namespace, name), assessment.previous, assessment.status)
        await post_events(kube, body, transition_notices(assessment.previous, assessment.status))
