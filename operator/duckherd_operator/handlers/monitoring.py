"""Per-pipeline metrics: served from the watch cache while the operator runs, and the
accumulated part dropped when a pipeline is deleted (docs/metrics.md)."""

from __future__ import annotations

import contextlib
from typing import Any

import kopf
from prometheus_client import REGISTRY

from duckherd.api import GROUP, PLURAL, VERSION
from duckherd_operator import metrics
from duckherd_operator.handlers.caches import Caches
from duckherd_operator.pipeline_metrics import PipelineCollector


@kopf.on.startup()
async def serve_pipeline_metrics(memo: kopf.Memo, **kwargs: Any) -> None:
    collector = PipelineCollector(Caches.from_kwargs(kwargs).pipelines, metrics.HISTORY)
    REGISTRY.register(collector)
    memo["pipeline_collector"] = collector


@kopf.on.cleanup()
async def stop_pipeline_metrics(memo: kopf.Memo, **_: Any) -> None:
    collector = memo.get("pipeline_collector")
    if isinstance(collector, PipelineCollector):
        with contextlib.suppress(KeyError):  # never registered
            REGISTRY.unregister(collector)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def forget_deleted_pipeline(
    type: str, namespace: str | None, name: str | None, **_: Any
) -> None:
    """A watch event handler, not `on.delete`: that would put a finalizer on every pipeline."""
    if type == "DELETED" and namespace and name:
        metrics.HISTORY.forget((namespace, name))
