"""Level-based reconciliation of one pipeline: children, chaining, status, Events.

Every function here can run any number of times, in any order, after any crash, and
converge: children are server-side applied, chained Jobs have deterministic names, and
status is recomputed from what the cluster holds and patched only when it differs.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

import kopf
from croniter import croniter
from pydantic import ValidationError

from duckherd import __version__
from duckherd.api import (
    API_VERSION,
    KIND,
    MAX_PIPELINE_NAME,
    DataPipelineSpec,
    DataPipelineStatus,
    RunStatus,
)
from duckherd.status import (
    DATA_READY,
    NOT_YET_REASONS,
    READY,
    Problem,
    RunObservation,
    StageObservation,
    carried_problem,
    compute_status,
    get_condition,
    rfc3339,
)
from duckherd.summary import StageSummary, SummaryError, decode
from duckherd.validation import describe_validation_errors
from duckherd_operator import metrics
from duckherd_operator.acceptance import Acted, apply_generation
from duckherd_operator.builders import (
    LABEL_PIPELINE,
    LABEL_RUN_ID,
    LABEL_TRIGGER,
    Pipeline,
    build_children,
    build_stage_job,
    chained_job_name,
    cronjob_name,
)
from duckherd_operator.chain import JobView, LabelRun, Run, StartStage, decide, job_view
from duckherd_operator.kube import Kube, collection_path, object_path

log = logging.getLogger("duckherd.operator")

_locks: dict[tuple[str, str], asyncio.Lock] = {}
_OPEN = ("Pending", "Running")


def pipeline_lock(namespace: str, name: str) -> asyncio.Lock:
    return _locks.setdefault((namespace, name), asyncio.Lock())


def stage_image() -> tuple[str, str]:
    image = os.environ.get("DUCKHERD_IMAGE", f"duckherd:{__version__}")
    return image, os.environ.get("DUCKHERD_IMAGE_PULL_POLICY", "IfNotPresent")


@dataclass(frozen=True)
class Parsed:
    pipeline: Pipeline | None
    problem: Problem | None


def parse_pipeline(body: dict[str, Any]) -> Parsed:
    """Validate a DataPipeline object at the door; a Problem names the field."""
    metadata = body["metadata"]
    name = metadata["name"]
    if len(name) > MAX_PIPELINE_NAME:
        return Parsed(
            None,
            Problem(
                "InvalidName",
                f"metadata.name: {len(name)} characters; at most {MAX_PIPELINE_NAME} "
                "(stage CronJob names derive from it)",
            ),
        )
    try:
        spec = DataPipelineSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        details = describe_validation_errors(error.errors(), "spec")
        return Parsed(None, Problem("InvalidSpec", details))
    image, policy = stage_image()
    return Parsed(
        Pipeline(
            name=name,
            namespace=metadata["namespace"],
            uid=metadata["uid"],
            generation=int(metadata.get("generation") or 0),
            spec=spec,
            image=image,
            image_pull_policy=policy,
        ),
        None,
    )


async def apply_children(kube: Kube, pipeline: Pipeline) -> None:
    for manifest in build_children(pipeline):
        await kube.apply(manifest)
    metrics.CHILDREN_APPLIED.inc()


def next_schedule_time(spec: DataPipelineSpec, now: datetime) -> str:
    zone = ZoneInfo(spec.timeZone) if spec.timeZone else UTC
    following = croniter(spec.schedule, now.astimezone(zone)).get_next(datetime)
    return rfc3339(following)


# --------------------------------------------------------------------------- observing


def _terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated")
        if terminated:
            return dict(terminated)
    return None


def _waiting_problem(pod: dict[str, Any]) -> Problem | None:
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason == "CreateContainerConfigError":
            message = waiting.get("message", "")
            cause = "MissingSecret" if "secret" in message.lower() else "PodConfigError"
            return Problem(cause, f"pod {pod['metadata']['name']}: {message}")
        if reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName"):
            return Problem("ImagePullFailed", f"pod {pod['metadata']['name']}: {reason}")
    return None


def _summary_from_pods(
    job: JobView, pods: list[dict[str, Any]]
) -> tuple[StageSummary | None, str | None]:
    """The stage summary of a finished Job, or a message saying why there is none."""
    finished = [(p, t) for p in pods if (t := _terminated(p)) is not None]
    if not finished:
        return None, None
    finished.sort(key=lambda pt: pt[1].get("finishedAt") or "")
    pod, terminated = finished[-1]
    try:
        return decode(terminated.get("message"), stage=job.stage), None
    except SummaryError as error:
        exit_code = terminated.get("exitCode")
        return None, f"pod {pod['metadata']['name']} (exit {exit_code}): {error}"


def observe_run(
    run: Run, pods_by_job: dict[str, list[dict[str, Any]]], previous: DataPipelineStatus
) -> RunObservation:
    earlier = {}
    if previous.lastRun is not None and previous.lastRun.id == run.run_id:
        earlier = {s.job: s for s in previous.lastRun.stages if s.job}
    stages = []
    for job in run.jobs:
        summary, problem = (None, None)
        state = job.state
        if not job.active:
            summary, problem = _summary_from_pods(job, pods_by_job.get(job.name, []))
            kept = earlier.get(job.name)
            if summary is None and problem is None and kept and kept.result not in _OPEN:
                # The pod is gone (history limits); what status recorded is still true.
                state, problem = kept.result, kept.message
            elif summary is None:
                # A finished stage must explain itself: no readable summary is a failure.
                state = "Failed"
                problem = problem or "no termination message (the pod is gone)"
        stages.append(
            StageObservation(
                stage=job.stage,
                job=job.name,
                state=state,
                start_time=job.start_time,
                completion_time=job.completion_time,
                summary=summary,
                message=problem,
            )
        )
    return RunObservation(run_id=run.run_id, trigger=run.trigger, stages=tuple(stages))


# --------------------------------------------------------------------------- acting


async def _start_stage(kube: Kube, pipeline: Pipeline, action: StartStage) -> None:
    cronjob = await kube.get(
        object_path(
            "batch/v1", "CronJob", pipeline.namespace, cronjob_name(pipeline.name, action.stage)
        )
    )
    job = build_stage_job(
        pipeline,
        action.stage,
        name=chained_job_name(pipeline.name, action.stage, action.run_id),
        run_id=action.run_id,
        trigger=action.trigger,
        cronjob_uid=cronjob["metadata"]["uid"] if cronjob else None,
    )
    if await kube.create(job) is not None:
        metrics.STAGES_STARTED.labels(stage=action.stage).inc()


class PipelineBusy(RuntimeError):
    """A stage Job of the pipeline is active: a new run would be a second writer."""


async def start_run_now(kube: Kube, pipeline: Pipeline, job_name: str) -> bool:
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
        return await _create_run_now_job(kube, pipeline, job_name)


async def _create_run_now_job(kube: Kube, pipeline: Pipeline, job_name: str) -> bool:
    cronjob = await kube.get(
        object_path(
            "batch/v1", "CronJob", pipeline.namespace, cronjob_name(pipeline.name, "ingest")
        )
    )
    job = build_stage_job(
        pipeline,
        "ingest",
        name=job_name,
        run_id=job_name,
        trigger="Manual",
        cronjob_uid=cronjob["metadata"]["uid"] if cronjob else None,
    )
    return await kube.create(job) is not None


async def _label_run(kube: Kube, namespace: str, action: LabelRun) -> None:
    await kube.merge_patch(
        object_path("batch/v1", "Job", namespace, action.job),
        {"metadata": {"labels": {LABEL_RUN_ID: action.run_id, LABEL_TRIGGER: action.trigger}}},
    )


def _status_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    patch: dict[str, Any] = dict(new)
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


def _run_event(body: kopf.Body, old: RunStatus | None, new: RunStatus | None) -> None:
    if new is None or new.result == "Running":
        return
    if old is not None and (old.id, old.result) == (new.id, new.result):
        return
    if new.result == "Succeeded":
        message = f"run {new.id} ({new.trigger.lower()}) succeeded"
        kopf.event(body, type="Normal", reason="RunSucceeded", message=message)
    else:
        kopf.warn(body, reason=f"Run{new.result}", message=f"run {new.id}: {new.result.lower()}")


def _events(raw_body: dict[str, Any], old: DataPipelineStatus, new: DataPipelineStatus) -> None:
    """Events for transitions users care about (only on change: no spam at steady state)."""
    body = cast(kopf.Body, raw_body)  # kopf's event API reads only metadata keys
    previous = old.lastRun
    seen = {(previous.id, s.stage, s.result) for s in previous.stages} if previous else set()
    run = new.lastRun
    for stage in run.stages if run else []:
        if run is None or (run.id, stage.stage, stage.result) in seen:
            continue
        if stage.result == "Succeeded":
            message = f"{stage.stage} ({stage.job}) succeeded"
            kopf.event(body, type="Normal", reason="StageSucceeded", message=message)
        elif stage.result == "Failed":
            message = f"{stage.stage} ({stage.job}): {stage.message}"
            kopf.warn(body, reason="StageFailed", message=message)
        elif stage.result == "Blocked":
            kopf.warn(body, reason="PublishBlocked", message=stage.message or "checks failed")
    _run_event(body, old.lastRun, new.lastRun)
    for type in (READY, DATA_READY):
        _condition_event(body, type, old, new)


def _condition_event(
    body: kopf.Body, type: str, old: DataPipelineStatus, new: DataPipelineStatus
) -> None:
    """Ready (deployment) and DataReady (data): Warning when one turns bad, with the cause."""
    before = get_condition(old.conditions, type)
    after = get_condition(new.conditions, type)
    if after is None or (
        before is not None and (before.status, before.reason) == (after.status, after.reason)
    ):
        return
    if after.status == "True" or after.reason in NOT_YET_REASONS:
        kopf.event(body, type="Normal", reason=after.reason, message=after.message)
    else:
        kopf.warn(body, reason=after.reason, message=after.message)


async def reconcile_body(kube: Kube, body: dict[str, Any]) -> None:
    """Children follow the spec, then chain and status follow the children."""
    parsed = parse_pipeline(body)
    acted = None
    if parsed.pipeline is not None:
        acted = await apply_generation(kube, parsed.pipeline)
    await sync(kube, body["metadata"]["namespace"], body["metadata"]["name"], acted)
    if acted is not None and acted.error is not None:
        raise acted.error  # transient: status says Reconciling, the caller retries


async def sync(kube: Kube, namespace: str, name: str, acted: Acted | None = None) -> None:
    """Chain the newest run and bring status up to date. Safe to call at any time."""
    async with pipeline_lock(namespace, name):
        body = await kube.get(object_path(API_VERSION, KIND, namespace, name))
        if body is None:
            return
        await _sync_locked(kube, body, acted)


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


async def _sync_locked(kube: Kube, body: dict[str, Any], acted: Acted | None = None) -> None:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    parsed = parse_pipeline(body)
    raw_status = body.get("status") or {}
    try:
        previous = DataPipelineStatus.model_validate(raw_status)
    except ValidationError:
        previous = DataPipelineStatus()
    now = datetime.now(UTC)
    selector = f"{LABEL_PIPELINE}={name}"
    observed_generation, problem = _observed(body, parsed, previous, acted)
    run_observation = None
    next_time = None
    if parsed.pipeline is not None:
        pipeline = parsed.pipeline
        jobs = await kube.list(collection_path("batch/v1", "Job", namespace), selector)
        views = [v for job in jobs if (v := job_view(job)) is not None]
        latest, actions = decide(pipeline.spec.stages(), views)
        for action in actions:
            if isinstance(action, StartStage):
                await _start_stage(kube, pipeline, action)
            else:
                await _label_run(kube, namespace, action)
        pods = await kube.list(collection_path("v1", "Pod", namespace), selector)
        pods_by_job: dict[str, list[dict[str, Any]]] = {}
        for pod in pods:
            job_name = (pod["metadata"].get("labels") or {}).get("job-name")
            if job_name:
                pods_by_job.setdefault(job_name, []).append(pod)
        if latest is not None:
            run_observation = observe_run(latest, pods_by_job, previous)
            active_pods = [p for j in latest.jobs if j.active for p in pods_by_job.get(j.name, [])]
            waiting = next((pr for p in active_pods if (pr := _waiting_problem(p))), None)
            problem = problem or waiting
        next_time = next_schedule_time(pipeline.spec, now)
    new = compute_status(
        spec=parsed.pipeline.spec if parsed.pipeline else None,
        generation=observed_generation,
        previous=previous,
        run=run_observation,
        now=now,
        next_schedule_time=next_time,
        problem=problem,
    )
    old_dump = previous.model_dump(mode="json", exclude_none=True)
    new_dump = new.model_dump(mode="json", exclude_none=True)
    if old_dump != new_dump:
        await kube.merge_patch(
            object_path(API_VERSION, KIND, namespace, name) + "/status",
            {"status": _status_patch(raw_status, new_dump)},
        )
        metrics.STATUS_PATCHES.inc()
        _events(body, previous, new)
