"""The periodic resync: one loop for all pipelines, and no finalizers.

Kopf's per-object timers put a finalizer on every object they serve, and a finalizer blocks
`kubectl delete` while the operator is down. The design wants deletes to go through without
us, so the periodic work — repairing drifted or deleted children, chaining a run whose Job
finished while the operator was away, moving freshness from Fresh to Warn to Stale — runs in
one operator-level loop that lists the pipelines (like a controller-runtime resync).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf

from duckherd.api import API_VERSION
from duckherd_operator import metrics, state
from duckherd_operator.kube import Kube
from duckherd_operator.reconcile import reconcile_body

RESYNC_INTERVAL_SECONDS = 30.0
log = logging.getLogger("duckherd.operator.resync")
_task: asyncio.Task[None] | None = None


def pipeline_collections(namespaces: list[str]) -> list[str]:
    base = f"/apis/{API_VERSION}"
    if not namespaces:
        return [f"{base}/datapipelines"]
    return [f"{base}/namespaces/{namespace}/datapipelines" for namespace in namespaces]


async def resync_once(kube: Kube, namespaces: list[str]) -> int:
    """Reconcile every pipeline once; returns how many were visited. Errors are per pipeline."""
    visited = 0
    for path in pipeline_collections(namespaces):
        for body in await kube.list(path):
            visited += 1
            try:
                await reconcile_body(kube, body)
            except Exception:  # one broken pipeline must not stop the others' repair
                metrics.SYNC_ERRORS.inc()
                meta = body.get("metadata", {})
                log.exception("resync of %s/%s failed", meta.get("namespace"), meta.get("name"))
    return visited


async def _resync_forever(interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await resync_once(state.kube(), state.namespaces())
        except Exception:  # the API may be away for a moment; the next round retries
            metrics.SYNC_ERRORS.inc()
            log.exception("resync failed")


@kopf.on.startup()
async def start_resync(**_: Any) -> None:
    global _task
    _task = asyncio.create_task(_resync_forever(RESYNC_INTERVAL_SECONDS))


@kopf.on.cleanup()
async def stop_resync(**_: Any) -> None:
    if _task is not None:
        _task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await _task
