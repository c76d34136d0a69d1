"""Level-based reconciliation of one pipeline: validate, act, observe, report.

Every function here can run any number of times, in any order, after any crash, and
converge: children are server-side applied, chained Jobs have deterministic names, and
status is recomputed from what the cluster holds and patched only when it differs. The
steps live in their own modules: validation.py (the door), acceptance.py (applying a
generation's children), observe.py (pure reading of Jobs and Pods), chain.py (pure
decisions), actions.py (API writes), report.py (status patch and Events).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from duckherd.api import API_VERSION, KIND, DataPipelineStatus
from duckherd.contract import LABEL_PIPELINE
from duckherd.status import Problem, RunObservation, carried_problem, compute_status
from duckherd_operator.acceptance import Acted, apply_generation
from duckherd_operator.actions import (
    end_superseded_jobs,
    patch_status,
    perform,
    pipeline_lock,
    post_events,
)
from duckherd_operator.builders import Pipeline
from duckherd_operator.chain import decide, job_view
from duckherd_operator.client import KubeClient, collection_path, object_path
from duckherd_operator.observe import (
    next_schedule_time,
    observe_run,
    pods_by_job,
    stuck_jobs,
    superseded,
)
from duckherd_operator.report import status_patch, transition_notices
from duckherd_operator.validation import Parsed, parse_pipeline


async def reconcile_body(kube: KubeClient, body: dict[str, Any]) -> None:
    """Children follow the spec, then chain and status follow the children."""
    parsed = parse_pipeline(body)
    acted = None
    if parsed.pipeline is not None:
        acted = await apply_generation(kube, parsed.pipeline)
    await sync(kube, body["metadata"]["namespace"], body["metadata"]["name"], acted)
    if acted is not None and acted.error is not None:
        raise acted.error  # transient: status says Reconciling, the caller retries


async def sync(kube: KubeClient, namespace: str, name: str, acted: Acted | None = None) -> None:
    """Chain the newest run and bring status up to date. Safe to call at any time."""
    async with pipeline_lock(namespace, name):
        body = await kube.get(object_path(API_VERSION, KIND, namespace, name))
        if body is None:
            return
        await _sync_locked(kube, body, acted)


def _stored_status(body: dict[str, Any]) -> DataPipelineStatus:
    try:
        return DataPipelineStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return DataPipelineStatus()


def _observed(
    body: dict[str, Any], parsed: Parsed, previous: DataPipelineStatus, acted: Acted | None
) -> tuple[int | None, Problem | None]:
    """The generation status may call observed, and the Problem met acting on it."""
    generation = int(body["metadata"].get("generation") or 0)
    if parsed.pipeline is None:
        return generation, parsed.problem  # nothing to apply: the verdict is the spec's
    if acted is not None and acted.generation == generation:
        return generation, acted.problem
    return previous.observedGeneration, carried_problem(previous)


async def _chain_and_observe(
    kube: KubeClient, body: dict[str, Any], pipeline: Pipeline, previous: DataPipelineStatus
) -> tuple[RunObservation | None, Problem | None]:
    """Move the newest run on by one step and observe it (None when there is no run); a
    stuck Job of an older generation is ended rather than held against the current one."""
    selector = f"{LABEL_PIPELINE}={pipeline.name}"
    jobs = await kube.list(collection_path("batch/v1", "Job", pipeline.namespace), selector)
    views = [v for job in jobs if (v := job_view(job)) is not None]
    latest, actions = decide(pipeline.spec.stages(), views)
    await perform(kube, pipeline, actions)
    if latest is None:
        return None, None
    pods = pods_by_job(await kube.list(collection_path("v1", "Pod", pipeline.namespace), selector))
    stuck = stuck_jobs(latest, pods)
    started_for = {job["metadata"]["name"]: job for job in jobs}
    old = {n: p for n, p in stuck.items() if superseded(started_for[n], pipeline.generation)}
    await end_superseded_jobs(kube, body, old)
    current = [problem for name, problem in stuck.items() if name not in old]
    return observe_run(latest, pods, previous), (current[0] if current else None)


async def _sync_locked(kube: KubeClient, body: dict[str, Any], acted: Acted | None = None) -> None:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    parsed = parse_pipeline(body)
    previous = _stored_status(body)
    now = datetime.now(UTC)
    observed_generation, problem = _observed(body, parsed, previous, acted)
    run_observation = None
    next_time = None
    if parsed.pipeline is not None:
        run_observation, waiting = await _chain_and_observe(kube, body, parsed.pipeline, previous)
        problem = problem or waiting
        next_time = next_schedule_time(parsed.pipeline.spec, now)
    new = compute_status(
        spec=parsed.pipeline.spec if parsed.pipeline else None,
        generation=observed_generation,
        previous=previous,
        run=run_observation,
        now=now,
        next_schedule_time=next_time,
        problem=problem,
    )
    new_dump = new.model_dump(mode="json", exclude_none=True)
    if previous.model_dump(mode="json", exclude_none=True) != new_dump:
        await patch_status(kube, namespace, name, status_patch(body.get("status") or {}, new_dump))
        await post_events(kube, body, transition_notices(previous, new))
