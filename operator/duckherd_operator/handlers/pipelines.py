"""DataPipeline handlers: thin, they validate and delegate to reconcile."""

from __future__ import annotations

from typing import Any

import kopf

from duckherd.api import GROUP, PLURAL, VERSION
from duckherd.contract import ANNOTATION_RESTORE, ANNOTATION_RUN_NOW
from duckherd_operator.actions import (
    PipelineBusy,
    apply_children,
    consume_annotation,
    post_events,
    start_restore,
    start_run_now,
)
from duckherd_operator.builders import run_now_job_name
from duckherd_operator.context import kube
from duckherd_operator.reconcile import reconcile_body, sync
from duckherd_operator.report import Notice
from duckherd_operator.validation import parse_pipeline

RESOURCE = (GROUP, VERSION, PLURAL)


@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
@kopf.on.resume(*RESOURCE)
async def reconcile_pipeline(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Children follow the spec; status follows the children. (The periodic repair of
    drift, missed chains and freshness is handlers/resync.py.)"""
    await reconcile_body(kube(memo), dict(body))


@kopf.on.create(*RESOURCE, annotations={ANNOTATION_RUN_NOW: kopf.PRESENT})
@kopf.on.update(*RESOURCE, annotations={ANNOTATION_RUN_NOW: kopf.PRESENT})
async def run_now(
    body: kopf.Body, old: Any, reason: str, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """`kubectl annotate dp/NAME duckherd.io/run-now=$(date +%s) --overwrite` starts a run.

    The Job name derives from the annotation's value, so a retried handler never starts a
    second run for the same request, and the annotation can stay (GitOps-friendly)."""
    value = body.metadata.annotations.get(ANNOTATION_RUN_NOW)
    before = (old or {}).get("metadata", {}).get("annotations", {}).get(ANNOTATION_RUN_NOW)
    if not value or (reason == "update" and value == before):
        return
    client = kube(memo)
    parsed = parse_pipeline(dict(body))
    if parsed.pipeline is None:
        notice = Notice("Warning", "RunNowIgnored", "the spec is invalid")
        await post_events(client, dict(body), [notice])
        return
    await apply_children(client, parsed.pipeline)
    job_name = run_now_job_name(parsed.pipeline.name, value)
    try:
        started = await start_run_now(client, parsed.pipeline, job_name)
    except PipelineBusy as busy:
        # One writer per warehouse: the manual run waits for the current one to end.
        raise kopf.TemporaryError(f"manual run deferred: {busy}", delay=15) from busy
    if started:
        notice = Notice("Normal", "RunStarted", f"manual run {job_name}")
        await post_events(client, dict(body), [notice])
        logger.info("manual run %s started", job_name)
    await sync(client, parsed.pipeline.namespace, parsed.pipeline.name)


@kopf.on.create(*RESOURCE, annotations={ANNOTATION_RESTORE: kopf.PRESENT})
@kopf.on.update(*RESOURCE, annotations={ANNOTATION_RESTORE: kopf.PRESENT})
@kopf.on.resume(*RESOURCE, annotations={ANNOTATION_RESTORE: kopf.PRESENT})
async def restore(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """`kubectl annotate dp/NAME duckherd.io/restore=<backup id>` restores that backup (or
    `latest`) with a one-off Job, once no stage Job is active; the annotation is then removed
    and status.restore and Events tell how it goes."""
    backup_id = str(body.metadata.annotations.get(ANNOTATION_RESTORE) or "").strip()
    client = kube(memo)
    parsed = parse_pipeline(dict(body))
    pipeline = parsed.pipeline
    if pipeline is None or pipeline.spec.backup is None or not backup_id:
        cause = "the spec is invalid" if pipeline is None else "spec.backup is not set"
        cause = cause if backup_id else "the annotation names no backup"
        await post_events(client, dict(body), [Notice("Warning", "RestoreIgnored", cause)])
        if pipeline is not None:
            await consume_annotation(client, pipeline, ANNOTATION_RESTORE)
        return
    await apply_children(client, pipeline)
    try:
        name = await start_restore(client, pipeline, backup_id)
    except PipelineBusy as busy:
        raise kopf.TemporaryError(f"restore deferred: {busy}", delay=15) from busy
    if name is not None:
        message = f"restoring backup {backup_id} with Job {name}"
        await post_events(client, dict(body), [Notice("Normal", "RestoreStarted", message)])
        logger.info(message)
    await consume_annotation(client, pipeline, ANNOTATION_RESTORE)
    await sync(client, pipeline.namespace, pipeline.name)
