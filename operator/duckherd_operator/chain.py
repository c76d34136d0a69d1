"""Pure chaining decisions: a pipeline's stage Jobs in, what to do next out.

Runs are groups of stage Jobs sharing a run id: the `duckherd.io/run-id` label, or — for a
Job started by its CronJob (on schedule or with `kubectl create job --from`) — the Job's own
name, which makes such a Job the first stage of a new run. Only the newest run is chained:
an older run's next stage would only redo work the newer run covers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from duckherd.api import STAGES, Stage
from duckherd.contract import LABEL_RUN_ID, LABEL_STAGE, LABEL_TRIGGER


@dataclass(frozen=True)
class JobView:
    """The facts about one stage Job that chaining needs."""

    name: str
    stage: Stage
    run_id: str
    labelled: bool
    trigger: str
    created: str
    state: str  # Pending | Running | Succeeded | Failed
    start_time: str | None = None
    completion_time: str | None = None

    @property
    def active(self) -> bool:
        return self.state in ("Pending", "Running")


def job_state(status: dict[str, Any]) -> str:
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") in ("Complete", "SuccessCriteriaMet"):
            return "Succeeded"
        if condition.get("type") in ("Failed", "FailureTarget"):
            return "Failed"
    if status.get("active") or status.get("ready"):
        return "Running"
    return "Pending"


def job_view(job: dict[str, Any]) -> JobView | None:
    """A JobView, or None for a Job that is not a Duckherd stage Job."""
    metadata = job.get("metadata", {})
    job_labels = metadata.get("labels") or {}
    stage = job_labels.get(LABEL_STAGE)
    if stage not in STAGES:
        return None
    annotations = metadata.get("annotations") or {}
    run_id = job_labels.get(LABEL_RUN_ID)
    if job_labels.get(LABEL_TRIGGER):
        trigger = job_labels[LABEL_TRIGGER]
    elif annotations.get("cronjob.kubernetes.io/instantiate") == "manual":
        trigger = "Manual"
    else:
        trigger = "Schedule"
    status = job.get("status") or {}
    return JobView(
        name=metadata["name"],
        stage=cast(Stage, stage),
        run_id=run_id or metadata["name"],
        labelled=bool(run_id),
        trigger=trigger,
        created=metadata.get("creationTimestamp", ""),
        state=job_state(status),
        start_time=status.get("startTime"),
        completion_time=status.get("completionTime"),
    )


@dataclass(frozen=True)
class Run:
    run_id: str
    trigger: str
    jobs: tuple[JobView, ...]  # in stage order; the newest attempt of each stage

    @property
    def started(self) -> str:
        return min(job.created for job in self.jobs)


def group_runs(jobs: Sequence[JobView]) -> list[Run]:
    """Runs, oldest first; within a run the newest Job of each stage wins."""
    by_run: dict[str, dict[str, JobView]] = {}
    for job in sorted(jobs, key=lambda j: (j.created, j.name)):
        by_run.setdefault(job.run_id, {})[job.stage] = job
    runs = []
    for run_id, stages in by_run.items():
        ordered = tuple(stages[s] for s in STAGES if s in stages)
        first = ordered[0]
        runs.append(Run(run_id=run_id, trigger=first.trigger, jobs=ordered))
    return sorted(runs, key=lambda r: (r.started, r.run_id))


@dataclass(frozen=True)
class StartStage:
    """Create the Job for `stage` of run `run_id`."""

    run_id: str
    stage: Stage
    trigger: str


@dataclass(frozen=True)
class LabelRun:
    """Put the run-id label on a Job that started a run (so `-l duckherd.io/run-id=` finds it)."""

    job: str
    run_id: str
    trigger: str


def next_stage(planned: Sequence[Stage], done: Stage) -> Stage | None:
    if done not in planned:
        return None
    index = planned.index(done)
    return planned[index + 1] if index + 1 < len(planned) else None


def decide(
    planned: Sequence[Stage], jobs: Sequence[JobView]
) -> tuple[Run | None, list[StartStage | LabelRun]]:
    """The newest run and the actions that move it on. At most one stage is started, and
    only when no stage Job of the pipeline is active (one writer per warehouse)."""
    actions: list[StartStage | LabelRun] = [
        LabelRun(job=j.name, run_id=j.run_id, trigger=j.trigger) for j in jobs if not j.labelled
    ]
    runs = group_runs(jobs)
    if not runs:
        return None, actions
    latest = runs[-1]
    if any(job.active for job in jobs):
        return latest, actions
    last = latest.jobs[-1]
    if last.state != "Succeeded":
        return latest, actions
    following = next_stage(planned, last.stage)
    if following is not None and not any(j.stage == following for j in latest.jobs):
        actions.append(StartStage(run_id=latest.run_id, stage=following, trigger=latest.trigger))
    return latest, actions
