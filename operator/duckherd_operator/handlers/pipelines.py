"""DataPipeline handlers: thin, they validate and delegate to reconcile."""

from __future__ import annotations

from typing import Any

import kopf

from duckherd.api import GROUP, PLURAL, VERSION
from duckherd.contract import ANNOTATION_RUN_NOW
from duckherd_operator.actions import PipelineBusy, apply_children, post_events, start_run_now
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
