"""Stage Jobs and Pods: any change re-syncs the owning pipeline (chain + status)."""

from __future__ import annotations

from typing import Any

import kopf

from duckherd.contract import LABEL_PIPELINE
from duckherd_operator.context import kube
from duckherd_operator.handlers.caches import MANAGED
from duckherd_operator.reconcile import sync


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
async def stage_job_changed(
    namespace: str | None, labels: kopf.Labels, type: str, memo: kopf.Memo, **_: Any
) -> None:
    if (
        not type or namespace is None
    ):  # the initial listing: the pipeline timers and resume handlers cover it
        return
    await sync(kube(memo), namespace, labels[LABEL_PIPELINE])


@kopf.on.event("", "v1", "pods", labels=MANAGED)
async def stage_pod_changed(
    namespace: str | None, labels: kopf.Labels, type: str, memo: kopf.Memo, **_: Any
) -> None:
    """Pods tell what Jobs do not: a missing Secret or image keeps a Job pending forever."""
    if not type or namespace is None:
        return
    await sync(kube(memo), namespace, labels[LABEL_PIPELINE])
