"""The periodic resync: one loop for all pipelines, from the watch caches, and no finalizers.

Kopf's per-object timers put a finalizer on every object they serve, and a finalizer blocks
`kubectl delete` while the operator is down. The design wants deletes to go through without
us, so the periodic work — repairing drifted or deleted children, chaining a run whose Job
finished while the operator was away, moving freshness from Fresh to Warn to Stale — runs in
one operator-level loop.

The loop reads only the watch caches (handlers/caches.py), never the API: a pipeline is
reconciled only when its caches show something to write — a child missing, edited or built
differently from what was last applied (applied.py), a stage to start, a status that is no
longer true. A fleet at rest costs no API requests at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

import kopf

from duckherd_operator import metrics
from duckherd_operator.applied import APPLIED
from duckherd_operator.assess import assess
from duckherd_operator.client import KubeClient
from duckherd_operator.context import kube
from duckherd_operator.handlers.caches import Caches
from duckherd_operator.reconcile import apply_pending, reconcile_body, sync
from duckherd_operator.validation import forget_parsed, parse_pipeline

RESYNC_INTERVAL_SECONDS = 30.0
log = logging.getLogger("duckherd.operator.resync")


def children_drifted(body: dict[str, Any], caches: Caches) -> bool:
    """A child the spec calls for is missing, or not as the operator last applied it."""
    pipeline = parse_pipeline(body).pipeline
    if pipeline is None:
        return False  # an invalid spec touches no children; status says why
    return APPLIED.drifted(pipeline, caches.child_versions((pipeline.namespace, pipeline.name)))


async def resync_pipeline(client: KubeClient, body: dict[str, Any], caches: Caches) -> str:
    """Reconcile one pipeline if its caches call for a write; says what was done."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    if apply_pending(namespace, name):
        return "pending"  # that pass applies, chains and reports; a second would only wait
    if children_drifted(body, caches):
        await reconcile_body(client, body)
        metrics.RESYNC_RECONCILED.labels(reason="children").inc()
        return "applied"
    key = (namespace, name)
    assessment = assess(body, caches.jobs_of(key), caches.pods_of(key), datetime.now(UTC))
    if assessment.calls_for_writes:
        await sync(client, namespace, name)  # reads afresh; writes only what is still due
        metrics.RESYNC_RECONCILED.labels(reason="status").inc()
        return "synced"
    return "quiet"


async def resync_once(client: KubeClient, caches: Caches) -> dict[str, int]:
    """Resync every cached pipeline once; counts by outcome. Errors are per pipeline."""
    outcomes: dict[str, int] = {}
    bodies = caches.pipeline_bodies()
    for body in bodies:
        try:
            outcome = await resync_pipeline(client, body, caches)
        except Exception:  # one broken pipeline must not stop the others' repair
            metrics.SYNC_ERRORS.inc()
            meta = body.get("metadata", {})
            log.exception("resync of %s/%s failed", meta.get("namespace"), meta.get("name"))
            outcome = "failed"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        # A quiet pipeline awaits nothing: let Job and Pod events in between pipelines, so a
        # round over a large fleet never holds up a finished stage's next step.
        await asyncio.sleep(0)
    seen = {(b["metadata"].get("namespace"), b["metadata"]["name"]) for b in bodies}
    forget_parsed(seen)
    APPLIED.forget(seen)
    return outcomes


async def _resync_forever(memo: kopf.Memo, caches: Caches, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            outcomes = await resync_once(kube(memo), caches)
        except Exception:  # not logged in at the moment; the next round retries
            metrics.SYNC_ERRORS.inc()
            log.exception("resync failed")
        else:
            metrics.RESYNC_ROUNDS.inc()
            log.debug("resync: %s", outcomes)


@kopf.on.startup()
async def start_resync(memo: kopf.Memo, **kwargs: Any) -> None:
    caches = Caches.from_kwargs(kwargs)
    memo["resync"] = asyncio.create_task(_resync_forever(memo, caches, RESYNC_INTERVAL_SECONDS))


@kopf.on.cleanup()
async def stop_resync(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("resync")
    if isinstance(task, asyncio.Task):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
