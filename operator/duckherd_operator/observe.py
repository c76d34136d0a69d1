"""Pure observation: what the cluster's Jobs and Pods say about a run.

Nothing here calls the API; the inputs are the objects the reconciler listed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

from duckherd.api import DataPipelineSpec, DataPipelineStatus
from duckherd.contract import ANNOTATION_GENERATION, LABEL_JOB_NAME
from duckherd.status import Problem, RunObservation, StageObservation, rfc3339
from duckherd.summary import StageSummary, SummaryError, decode
from duckherd_operator.chain import JobView, Run

_OPEN = ("Pending", "Waiting", "Running")


# (schedule, time zone) → (from when, the next fire time after it), as last computed. The
# same fire time is the next one for any clock between the two, so a fleet's resync rounds do
# not run croniter for every pipeline.
_next_fire: dict[tuple[str, str | None], tuple[datetime, datetime]] = {}


def next_schedule_time(spec: DataPipelineSpec, now: datetime) -> str:
    key = (spec.schedule, spec.timeZone)
    kept = _next_fire.get(key)
    if kept is None or not kept[0] <= now < kept[1]:
        if len(_next_fire) > 10_000:
            _next_fire.clear()
        zone = ZoneInfo(spec.timeZone) if spec.timeZone else UTC
        kept = (now, croniter(spec.schedule, now.astimezone(zone)).get_next(datetime))
        _next_fire[key] = kept
    return rfc3339(kept[1])


def pods_by_job(pods: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Stage pods grouped by the Job that owns them (the `job-name` label)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for pod in pods:
        job_name = (pod["metadata"].get("labels") or {}).get(LABEL_JOB_NAME)
        if job_name:
            grouped.setdefault(job_name, []).append(pod)
    return grouped


def terminated_state(pod: dict[str, Any]) -> dict[str, Any] | None:
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated")
        if terminated:
            return dict(terminated)
    return None


SIGKILL_EXIT = 137  # 128 + 9: how a container killed with SIGKILL exits


def no_summary_message(pod: dict[str, Any], terminated: dict[str, Any], error: Exception) -> str:
    """Why a finished pod left no summary, in words: a pod killed by its node (out of memory,
    a SIGKILL, a node restart) says so instead of quoting the log lines that stand in for
    the termination message (terminationMessagePolicy: FallbackToLogsOnError)."""
    name, code = pod["metadata"]["name"], terminated.get("exitCode")
    reason, said = terminated.get("reason"), terminated.get("message") or ""
    if reason == "OOMKilled":
        return (
            f"pod {name} ran out of memory (OOMKilled, exit {code}) before it finished; "
            "what it had not committed was discarded. Raise spec.pod.resources.limits.memory"
        )
    if code == SIGKILL_EXIT or terminated.get("signal") == 9:
        how = f"{reason}: {said.strip()}" if reason not in (None, "Error") and said else "SIGKILL"
        return (
            f"pod {name} was killed ({how}, exit {code}) before it finished: stopped on its node "
            "(out of memory, a node restart, or killed); what it had not committed was "
            "discarded, the next run starts from what was committed"
        )
    return f"pod {name} (exit {code}): {error}"


def waiting_problem(pod: dict[str, Any]) -> Problem | None:
    """Why a pod cannot start (a missing Secret, an image that cannot be pulled), if it cannot."""
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


def unschedulable(pod: dict[str, Any]) -> str | None:
    """The scheduler's reason when a pod waits for a node (not enough CPU or memory free,
    no node matching its selector, ...), else None."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            why = condition.get("message") or "no node can run it yet"
            return f"waiting for a node: pod {pod['metadata']['name']}: {why}"
    return None


def stuck_jobs(run: Run, pods: dict[str, list[dict[str, Any]]]) -> dict[str, Problem]:
    """Active stage Jobs of the run whose pod cannot start, with the reason."""
    stuck = {}
    for job in run.jobs:
        problems = [found for pod in pods.get(job.name, []) if (found := waiting_problem(pod))]
        if job.active and problems:
            stuck[job.name] = problems[0]
    return stuck


def superseded(job: dict[str, Any], generation: int) -> bool:
    """A stage Job started for an older generation (Jobs a CronJob starts carry none)."""
    annotations = job.get("metadata", {}).get("annotations") or {}
    started_for = annotations.get(ANNOTATION_GENERATION)
    return started_for is not None and started_for.isdigit() and int(started_for) < generation


def _summary_from_pods(
    job: JobView, pods: list[dict[str, Any]]
) -> tuple[StageSummary | None, str | None]:
    """The stage summary of a finished Job, or a message saying why there is none."""
    finished = [(p, t) for p in pods if (t := terminated_state(p)) is not None]
    if not finished:
        return None, None
    finished.sort(key=lambda pt: pt[1].get("finishedAt") or "")
    pod, terminated = finished[-1]
    try:
        return decode(terminated.get("message"), stage=job.stage), None
    except SummaryError as error:
        return None, no_summary_message(pod, terminated, error)


def observe_run(
    run: Run, pods: dict[str, list[dict[str, Any]]], previous: DataPipelineStatus
) -> RunObservation:
    earlier = {}
    if previous.lastRun is not None and previous.lastRun.id == run.run_id:
        earlier = {s.job: s for s in previous.lastRun.stages if s.job}
    stages = []
    for job in run.jobs:
        summary, problem = (None, None)
        state = job.state
        waiting = [why for pod in pods.get(job.name, []) if (why := unschedulable(pod))]
        if job.active and waiting:
            state, problem = "Waiting", waiting[-1]
        if not job.active:
            summary, problem = _summary_from_pods(job, pods.get(job.name, []))
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
