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

from duckherd.api import API_VERSION, KIND
from duckherd_operator import metrics
from duckherd_operator.client import KubeClient, collection_path
from duckherd_operator.context import kube, namespaces
from duckherd_operator.reconcile import reconcile_body

RESYNC_INTERVAL_SECONDS = 30.0
log = logging.getLogger("duckherd.operator.resync")


def pipeline_collections(served: list[str]) -> list[str]:
    """The DataPipeline collections of the served namespaces (all of them for none)."""
    if not served:
        return [collection_path(API_VERSION, KIND, None)]
    return [collection_path(API_VERSION, KIND, namespace) for namespace in served]


async def resync_once(client: KubeClient, served: list[str]) -> int:
    """Reconcile every pipeline once; returns how many were visited. Errors are per pipeline."""
    visited = 0
    for path in pipeline_collections(served):
        for body in await client.list(path):
            visited += 1
            try:
                await reconcile_body(client, body)
            except Exception:  # one broken pipeline must not stop the others' repair
                metrics.SYNC_ERRORS.inc()
                meta = body.get("metadata", {})
                log.exception("resync of %s/%s failed", meta.get("namespace"), meta.get("name"))
    return visited


async def _resync_forever(memo: kopf.Memo, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await resync_once(kube(memo), namespaces(memo))
        except Exception:  # the API may be away for a moment; the next round retries
            metrics.SYNC_ERRORS.inc()
            log.exception("resync failed")


@kopf.on.startup()
async def start_resync(memo: kopf.Memo, **_: Any) -> None:
    memo["resync"] = asyncio.create_task(_resync_forever(memo, RESYNC_INTERVAL_SECONDS))


@kopf.on.cleanup()
async def stop_resync(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("resync")
    if isinstance(task, asyncio.Task):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
