"""Pure assessment of one pipeline: its object, stage Jobs and Pods in; the actions that move
its newest run on and the status it should have out.

The reconcile pass assesses what it just listed; the resync assesses what the watch caches
hold, and only a pipeline whose assessment calls for a write is reconciled (quiet at rest).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from duckherd.api import DataPipelineStatus
from duckherd.status import Problem, carried_problem, compute_status
from duckherd_operator.acceptance import Acted
from duckherd_operator.chain import JobView, LabelRun, StartStage, decide, job_view
from duckherd_operator.observe import (
    next_schedule_time,
    observe_run,
    pods_by_job,
    stuck_jobs,
    superseded,
)
from duckherd_operator.tasks import backups_status, restore_status, task_active
from duckherd_operator.validation import Parsed, parse_pipeline


@dataclass(frozen=True)
class Assessment:
    parsed: Parsed
    previous: DataPipelineStatus
    status: DataPipelineStatus
    actions: list[StartStage | LabelRun]
    # Stuck Jobs of an older generation (name → why their pod cannot start): to be ended.
    superseded: dict[str, Problem] = field(default_factory=dict)

    @property
    def status_changed(self) -> bool:
        old = self.previous.model_dump(mode="json", exclude_none=True)
        return old != self.status.model_dump(mode="json", exclude_none=True)

    @property
    def calls_for_writes(self) -> bool:
        return bool(self.actions) or bool(self.superseded) or self.status_changed


def stored_status(body: dict[str, Any]) -> DataPipelineStatus:
    try:
        return DataPipelineStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return DataPipelineStatus()


def stage_job_views(jobs: Iterable[dict[str, Any]]) -> list[JobView]:
    return [view for job in jobs if (view := job_view(job)) is not None]


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


def assess(
    body: dict[str, Any],
    jobs: list[dict[str, Any]],
    pods: Iterable[dict[str, Any]],
    now: datetime,
    acted: Acted | None = None,
) -> Assessment:
    """`jobs` and `pods` are the pipeline's stage Jobs and Pods (listed, or from the caches)."""
    parsed = parse_pipeline(body)
    previous = stored_status(body)
    observed_generation, problem = _observed(body, parsed, previous, acted)
    run_observation = None
    next_time = None
    actions: list[StartStage | LabelRun] = []
    ended: dict[str, Problem] = {}
    pods = list(pods)
    if parsed.pipeline is not None:
        latest, actions = decide(parsed.pipeline.spec.stages(), stage_job_views(jobs))
        if task_active(jobs, "restore"):  # the warehouse is being replaced: no stage starts
            actions = [action for action in actions if not isinstance(action, StartStage)]
        if latest is not None:
            grouped = pods_by_job(pods)
            run_observation = observe_run(latest, grouped, previous)
            stuck = stuck_jobs(latest, grouped)
            started_for = {job["metadata"]["name"]: job for job in jobs}
            generation = parsed.pipeline.generation
            ended = {n: p for n, p in stuck.items() if superseded(started_for[n], generation)}
            current = [found for name, found in stuck.items() if name not in ended]
            problem = problem or (current[0] if current else None)
        next_time = next_schedule_time(parsed.pipeline.spec, now)
    status = compute_status(
        spec=parsed.pipeline.spec if parsed.pipeline else None,
        generation=observed_generation,
        previous=previous,
        run=run_observation,
        now=now,
        next_schedule_time=next_time,
        problem=problem,
    )
    status.backups = backups_status(previous.backups, jobs, pods)
    status.restore = restore_status(previous.restore, jobs, pods)
    return Assessment(parsed, previous, status, actions, ended)
