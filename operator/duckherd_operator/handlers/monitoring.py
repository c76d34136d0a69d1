"""Per-pipeline metrics: served from the watch cache while the operator runs, and the
accumulated part dropped when a pipeline is deleted (docs/metrics.md)."""

from __future__ import annotations

from typing import Any

import kopf

from duckherd.api import GROUP, PLURAL, VERSION
from duckherd_operator import metrics
from duckherd_operator.handlers.caches import Caches


@kopf.on.startup()
async def serve_pipeline_metrics(**kwargs: Any) -> None:
    metrics.PIPELINES.attach(Caches.from_kwargs(kwargs).pipelines)


@kopf.on.cleanup()
async def stop_pipeline_metrics(**_: Any) -> None:
    metrics.PIPELINES.detach()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def forget_deleted_pipeline(
    type: str, namespace: str | None, name: str | None, **_: Any
) -> None:
    """A watch event handler, not `on.delete`: that would put a finalizer on every pipeline."""
    if type == "DELETED" and namespace and name:
        metrics.HISTORY.forget((namespace, name))
