"""API actions: the writes that move a pipeline on (children, stage Jobs, labels, status).

Each action is idempotent: children are server-side applied, Jobs have deterministic names
(a second create is a no-op), and label and status patches converge.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from duckherd.api import API_VERSION, KIND
from duckherd.contract import ANNOTATION_BACKUP_ID, LABEL_PIPELINE, LABEL_RUN_ID, LABEL_TRIGGER
from duckherd.status import Problem
from duckherd_operator import metrics
from duckherd_operator.applied import APPLIED
from duckherd_operator.builders import (
    Pipeline,
    build_children,
    build_restore_job,
    build_stage_job,
    chained_job_name,
    cronjob_name,
    restore_job_name,
)
from duckherd_operator.chain import LabelRun, StartStage, job_state, job_view
from duckherd_operator.client import KubeClient, collection_path, object_path
from duckherd_operator.per_loop import PerLoop
from duckherd_operator.report import Notice, event_manifest
from duckherd_operator.tasks import task_active, task_jobs

log = logging.getLogger("duckherd.operator")

_locks: PerLoop[dict[tuple[str, str], asyncio.Lock]] = PerLoop(dict)


def pipeline_lock(namespace: str, name: str) -> asyncio.Lock:
    """One reconciler at a time per pipeline (Job events, the resync and run-now race)."""
    return _locks.get().setdefault((namespace, name), asyncio.Lock())


async def apply_children(kube: KubeClient, pipeline: Pipeline) -> None:
    for manifest in build_children(pipeline):
        APPLIED.record(manifest, await kube.apply(manifest))
    metrics.CHILDREN_APPLIED.inc()


async def _cronjob_uid(kube: KubeClient, pipeline: Pipeline, stage: str) -> str | None:
    """Stage Jobs are owned by their stage's CronJob (garbage collection, `kubectl get`)."""
    cronjob = await kube.get(
        object_path("batch/v1", "CronJob", pipeline.namespace, cronjob_name(pipeline.name, stage))
    )
    return str(cronjob["metadata"]["uid"]) if cronjob else None


async def start_stage(kube: KubeClient, pipeline: Pipeline, action: StartStage) -> None:
    job = build_stage_job(
        pipeline,
        action.stage,
        name=chained_job_name(pipeline.name, action.stage, action.run_id),
        run_id=action.run_id,
        trigger=action.trigger,
        cronjob_uid=await _cronjob_uid(kube, pipeline, action.stage),
    )
    if await kube.create(job) is not None:
        metrics.STAGES_STARTED.labels(stage=action.stage).inc()


async def label_run(kube: KubeClient, namespace: str, action: LabelRun) -> None:
    await kube.merge_patch(
        object_path("batch/v1", "Job", namespace, action.job),
        {"metadata": {"labels": {LABEL_RUN_ID: action.run_id, LABEL_TRIGGER: action.trigger}}},
    )


async def perform(
    kube: KubeClient, pipeline: Pipeline, actions: list[StartStage | LabelRun]
) -> None:
    for action in actions:
        if isinstance(action, StartStage):
            await start_stage(kube, pipeline, action)
        else:
            await label_run(kube, pipeline.namespace, action)


class PipelineBusy(RuntimeError):
    """A stage Job of the pipeline is active: a new run would be a second writer."""


async def start_run_now(kube: KubeClient, pipeline: Pipeline, job_name: str) -> bool:
    """Start a manual run at the first stage; False when that Job already exists.

    Raises PipelineBusy while another stage Job is active (the caller retries later)."""
    async with pipeline_lock(pipeline.namespace, pipeline.name):
        jobs = await kube.list(
            collection_path("batch/v1", "Job", pipeline.namespace),
            f"{LABEL_PIPELINE}={pipeline.name}",
        )
        views = [v for job in jobs if (v := job_view(job)) is not None]
        if any(v.name == job_name for v in views):
            return False
        active = [v.name for v in views if v.active]
        if active:
            raise PipelineBusy(f"stage Job {active[0]} is active")
        if task_active(jobs, "restore"):
            raise PipelineBusy("a restore of the warehouse is running")
        job = build_stage_job(
            pipeline,
            "ingest",
            name=job_name,
            run_id=job_name,
            trigger="Manual",
            cronjob_uid=await _cronjob_uid(kube, pipeline, "ingest"),
        )
        return await kube.create(job) is not None


async def start_restore(kube: KubeClient, pipeline: Pipeline, backup_id: str) -> str | None:
    """Create a restore Job; its name, or None when one for this backup is already active
    (a retried handler).

    Raises PipelineBusy while a stage Job is active: the restore waits for the run to end
    rather than replacing the warehouse under it."""
    async with pipeline_lock(pipeline.namespace, pipeline.name):
        jobs = await kube.list(
            collection_path("batch/v1", "Job", pipeline.namespace),
            f"{LABEL_PIPELINE}={pipeline.name}",
        )
        restores = task_jobs(jobs, "restore")
        if any(
            (job["metadata"].get("annotations") or {}).get(ANNOTATION_BACKUP_ID) == backup_id
            and job_state(job.get("status") or {}) in ("Pending", "Running")
            for job in restores
        ):
            return None
        active = [v.name for job in jobs if (v := job_view(job)) is not None and v.active]
        if active:
            raise PipelineBusy(f"stage Job {active[0]} is active")
        # Numbered by the restores before it: the same backup can be restored again later.
        name = restore_job_name(pipeline.name, f"{pipeline.uid}/{backup_id}/{len(restores)}")
        created = await kube.create(build_restore_job(pipeline, backup_id, name=name))
        return name if created is not None else None


async def consume_annotation(kube: KubeClient, pipeline: Pipeline, annotation: str) -> None:
    """Remove a one-shot request annotation once acted on."""
    await kube.merge_patch(
        object_path(API_VERSION, KIND, pipeline.namespace, pipeline.name),
        {"metadata": {"annotations": {annotation: None}}},
    )


async def patch_status(kube: KubeClient, namespace: str, name: str, patch: dict[str, Any]) -> None:
    await kube.merge_patch(
        object_path(API_VERSION, KIND, namespace, name) + "/status", {"status": patch}
    )
    metrics.STATUS_PATCHES.inc()


async def post_events(kube: KubeClient, body: dict[str, Any], notices: Iterable[Notice]) -> None:
    """Write the Events through our client (Kopf's poster only serves its handlers' tasks, not
    the resync loop). An Event that cannot be written is logged; reconciliation goes on."""
    for notice in notices:
        try:
            await kube.create(event_manifest(body, notice, datetime.now(UTC)))
        except Exception as error:  # an Event is a courtesy; status already says it
            log.warning("could not post Event %s: %s", notice.reason, error)


async def end_superseded_jobs(
    kube: KubeClient, body: dict[str, Any], stuck: dict[str, Problem]
) -> None:
    """A Job of an older generation whose pod cannot start (a missing Secret, an image that
    cannot be pulled) would stay active for ever and block the fixed spec's runs: end it
    (it never ran, so nothing is half written). Its run fails, and status says so."""
    namespace = body["metadata"]["namespace"]
    for name, problem in stuck.items():
        await kube.merge_patch(
            object_path("batch/v1", "Job", namespace, name), {"spec": {"activeDeadlineSeconds": 1}}
        )
        message = f"ended stage Job {name} of an older generation: {problem.message}"
        log.info("%s/%s: %s", namespace, body["metadata"]["name"], message)
        await post_events(kube, body, [Notice("Normal", "SupersededJobEnded", message[:1000])])
