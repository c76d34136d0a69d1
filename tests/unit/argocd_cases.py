"""The Argo CD health check's cases, derived from the status code rather than picked by hand.

`derived_objects()` runs `compute_status` over every combination of pipeline shape,
`spec.suspend`, run history (none, one or two runs of every outcome), clock (fresh, warn,
stale), operator problem and observed-or-not generation, and keeps one DataPipeline per
distinct set of conditions the operator can produce. `expected_health()` is the contract of
docs/status.md in executable form. `python -m tests.unit.argocd_cases --write` writes the
cases as Argo CD's resource_customizations lay them out: `health_test.yaml` next to
`health.lua`, one input manifest per case under `testdata/`. Snapshots taken from the live
cluster by the e2e suite live in `testdata/e2e/` and are listed too.
"""

from __future__ import annotations

import functools
import itertools
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from duckherd.api import API_VERSION, KIND, DataPipelineSpec, DataPipelineStatus
from duckherd.status import (
    CHILD_REJECTED,
    Problem,
    RunObservation,
    StageObservation,
    compute_status,
    rfc3339,
)
from duckherd.summary import (
    CheckResult,
    ChecksSummary,
    PublishedTarget,
    StageSummary,
    TableSummary,
)
from tests.unit.manifests import spec

CHECK_DIR = Path(__file__).resolve().parents[2] / "charts" / "duckherd" / "argocd"
DERIVED_DIR = "testdata/derived"
E2E_DIR = "testdata/e2e"
NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
LOADED = rfc3339(NOW - timedelta(hours=1))

# ------------------------------------------------------------------ the contract (docs/status.md)

# Deployment conditions, in the order they decide: (type, status) -> Argo CD health.
DEPLOYMENT_HEALTH = [
    (("Stalled", "True"), "Degraded"),
    (("Reconciling", "True"), "Progressing"),
    (("Ready", "False"), "Degraded"),
    (("Ready", "Unknown"), "Progressing"),
]
# DataReady True, or its False reason -> Argo CD health.
DATA_HEALTH = {
    "True": "Healthy",
    "AwaitingFirstRun": "Healthy",
    "FirstRunInProgress": "Progressing",
    "RunFailed": "Degraded",
    "ChecksFailed": "Degraded",
    "PublishBlocked": "Degraded",
    "PublishFailed": "Degraded",
    "Stale": "Degraded",
}


def expected_health(pipeline: dict[str, Any]) -> dict[str, str]:
    """What the health check must say about a DataPipeline, by the contract."""
    status = pipeline.get("status") or {}
    generation = pipeline["metadata"].get("generation")
    observed = status.get("observedGeneration")
    if observed is None or (generation is not None and observed != generation):
        message = f"waiting for the operator to act on generation {generation}"
        return {"status": "Progressing", "message": message}
    conditions = {c["type"]: c for c in status.get("conditions") or []}

    def by(condition: dict[str, Any], health: str) -> dict[str, str]:
        return {"status": health, "message": f"{condition['reason']}: {condition['message']}"}

    for (type, value), health in DEPLOYMENT_HEALTH:
        if type in conditions and conditions[type]["status"] == value:
            return by(conditions[type], health)
    if (pipeline.get("spec") or {}).get("suspend") is True:
        return {"status": "Suspended", "message": "spec.suspend is true: no new runs"}
    data = conditions.get("DataReady")
    if data is None:
        return {"status": "Healthy", "message": "applied; the operator reports no data health"}
    return by(data, DATA_HEALTH["True" if data["status"] == "True" else data["reason"]])


# ------------------------------------------------------------------ what the operator can produce


def _stage(stage: Any, state: str, summary: StageSummary | None = None) -> StageObservation:
    finished = LOADED if state in ("Succeeded", "Failed") else None
    return StageObservation(
        stage=stage, job=f"p-{stage}", state=state, completion_time=finished, summary=summary
    )


def _ingest(ok: bool = True) -> StageObservation:
    tables = {"raw.customers": TableSummary(rows=10, loaded=10, loadedAt=LOADED)} if ok else {}
    error = None if ok else "HTTPStatusError: 503 from the source"
    summary = StageSummary(stage="ingest", ok=ok, tables=tables, finishedAt=LOADED, error=error)
    return _stage("ingest", "Succeeded" if ok else "Failed", summary)


def _check(failed: int = 0, warned: int = 0) -> StageObservation:
    results = [CheckResult(name="id not null", severity="error", success=not failed)]
    results += [CheckResult(name="rows", severity="warn", success=False)] if warned else []
    checks = ChecksSummary(passed=1 - failed, failed=failed, warned=warned, results=results)
    summary = StageSummary(stage="check", ok=not failed, checks=checks, finishedAt=LOADED)
    return _stage("check", "Failed" if failed else "Succeeded", summary)


def _publish(ok: bool = True, blocked: bool = False) -> StageObservation:
    published = [PublishedTarget(table="marts.m", target="redis:cache", rows=10)] if ok else []
    error = None if ok or blocked else "ConnectionError: redis is down"
    summary = StageSummary(
        stage="publish", ok=ok, published=published, blocked=blocked, error=error
    )
    return _stage("publish", "Succeeded" if ok else "Failed", summary)


_TRANSFORM = _stage("transform", "Succeeded", StageSummary(stage="transform", ok=True))
_RUNNING = (_stage("ingest", "Running"),)
INGEST_ONLY_RUNS: dict[str, tuple[StageObservation, ...]] = {
    "running": _RUNNING,
    "succeeded": (_ingest(),),
    "ingest-failed": (_ingest(ok=False),),
}
FULL_RUNS: dict[str, tuple[StageObservation, ...]] = {
    "running": _RUNNING,
    "succeeded": (_ingest(), _TRANSFORM, _check(), _publish()),
    "checks-warned": (_ingest(), _TRANSFORM, _check(warned=1), _publish()),
    "ingest-failed": (_ingest(ok=False),),
    "checks-failed": (_ingest(), _TRANSFORM, _check(failed=1)),
    "publish-blocked": (_ingest(), _TRANSFORM, _check(), _publish(ok=False, blocked=True)),
    "publish-failed": (_ingest(), _TRANSFORM, _check(), _publish(ok=False)),
}
SHAPES = {
    "ingest-only": (
        {**spec(), "transform": None, "quality": None, "publish": []},
        INGEST_ONLY_RUNS,
    ),
    "full": (spec(), FULL_RUNS),
}
PROBLEMS: dict[str, Problem | None] = {
    "none": None,
    "invalid-spec": Problem("InvalidSpec", "spec.timeZone: unknown time zone 'Mars/Olympus'"),
    "child-rejected": Problem(CHILD_REJECTED, "the API server refused CronJob p-ingest: ..."),
    "missing-secret": Problem("MissingSecret", 'pod p-ingest-x: secret "crm-api" not found'),
    "image-pull": Problem("ImagePullFailed", "pod p-ingest-x: ImagePullBackOff"),
    "api-away": Problem("ApplyRetrying", "applying ConfigMap p-spec failed", transient=True),
}
CLOCKS = {"fresh": NOW, "warn": NOW + timedelta(hours=30), "stale": NOW + timedelta(hours=50)}


def _history(runs: dict[str, tuple[StageObservation, ...]]) -> Iterator[list[str]]:
    yield []
    for length in (1, 2):
        yield from (list(names) for names in itertools.product(runs, repeat=length))


def _status_after(
    body: dict[str, Any], runs: dict[str, tuple[StageObservation, ...]], history: list[str]
) -> DataPipelineStatus:
    status = DataPipelineStatus()
    parsed = DataPipelineSpec.model_validate(body)
    for index, name in enumerate(history):
        observation = RunObservation(run_id=f"r{index + 1}", trigger="Schedule", stages=runs[name])
        status = compute_status(
            spec=parsed, generation=1, previous=status, run=observation, now=NOW
        )
    return status


def health_input(pipeline: dict[str, Any]) -> dict[str, Any]:
    """What of a DataPipeline a health check reads: a case's input manifest (e2e snapshots
    are taken with it too, so no uid, namespace or run details end up in the fixture)."""
    status = pipeline.get("status") or {}
    kept = ("observedGeneration", "conditions", "lastSuccessfulTime", "lastFailureTime")
    spec = pipeline.get("spec") or {}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": pipeline["metadata"]["name"],
            "generation": pipeline["metadata"].get("generation"),
        },
        "spec": {
            "schedule": spec.get("schedule"),
            **({"suspend": True} if spec.get("suspend") else {}),
        },
        "status": {key: status[key] for key in kept if key in status},
    }


def _pipeline(status: DataPipelineStatus, suspend: bool, generation: int = 1) -> dict[str, Any]:
    return health_input(
        {
            "metadata": {"name": "pipeline", "generation": generation},
            "spec": {"schedule": "0 6 * * *", "suspend": suspend},
            "status": status.model_dump(mode="json", exclude_none=True),
        }
    )


def _signature(pipeline: dict[str, Any], decisive: tuple[str, ...]) -> tuple[Any, ...]:
    """The condition statuses, the DataReady reason (health depends on it), suspend, and
    whether the generation is observed; `decisive` narrows the conditions looked at."""
    conditions = pipeline["status"].get("conditions", [])
    return (
        pipeline["metadata"]["generation"] == pipeline["status"].get("observedGeneration"),
        pipeline["spec"].get("suspend", False),
        tuple(
            sorted(
                (c["type"], c["status"], c["reason"] if c["type"] == "DataReady" else "")
                for c in conditions
                if not decisive or c["type"] in decisive
            )
        ),
    )


def _statuses() -> Iterator[tuple[bool, DataPipelineStatus]]:
    """(suspend, status) for every combination of shape, history, problem and clock."""
    for (body, runs), suspend in itertools.product(SHAPES.values(), (False, True)):
        body = {**body, "suspend": suspend}
        parsed = DataPipelineSpec.model_validate(body)
        for history in _history(runs):
            before = _status_after(body, runs, history[:-1])
            stages = runs[history[-1]] if history else None
            last = RunObservation(f"r{len(history)}", "Schedule", stages) if stages else None
            for (name, problem), now in itertools.product(PROBLEMS.items(), CLOCKS.values()):
                status = compute_status(
                    spec=None if name == "invalid-spec" else parsed,
                    generation=1,
                    previous=before,
                    run=last,
                    now=now,
                    problem=problem,
                )
                yield suspend, status


@functools.cache
def derived_objects() -> dict[tuple[Any, ...], dict[str, Any]]:
    """One DataPipeline per distinct combination of conditions the status code produces, and
    one with a newer, unobserved generation per combination of deployment conditions."""
    found: dict[tuple[Any, ...], dict[str, Any]] = {}
    for suspend, status in _statuses():
        pipeline = _pipeline(status, suspend)
        found.setdefault(_signature(pipeline, ()), pipeline)
        unobserved = _pipeline(status, suspend, generation=2)
        found.setdefault(_signature(unobserved, ("Ready", "Stalled", "Reconciling")), unobserved)
    return found


# ------------------------------------------------------------------ the fixture


def _slug(signature: tuple[Any, ...]) -> str:
    observed, suspend, conditions = signature
    parts = ["observed" if observed else "unobserved"] + (["suspended"] if suspend else [])
    parts += ["-".join(filter(None, c)) for c in conditions if c[0] != "Suspended"]
    return re.sub(r"[^a-z0-9.-]+", "-", "_".join(parts).lower())


def fixture_files() -> dict[str, str]:
    """Relative path under charts/duckherd/argocd -> content, for every file of the cases."""
    files: dict[str, str] = {}
    tests = []
    inputs = {f"{DERIVED_DIR}/{_slug(k)}.yaml": v for k, v in derived_objects().items()}
    for path in sorted(inputs):
        files[path] = yaml.safe_dump(inputs[path], sort_keys=False)
    snapshots = sorted((CHECK_DIR / E2E_DIR).glob("*.yaml"))
    inputs.update({f"{E2E_DIR}/{p.name}": yaml.safe_load(p.read_text()) for p in snapshots})
    for path in sorted(inputs):
        tests.append({"healthStatus": expected_health(inputs[path]), "inputPath": path})
    header = "# Generated by `python -m tests.unit.argocd_cases --write`. Do not edit by hand.\n"
    files["health_test.yaml"] = header + yaml.safe_dump(
        {"tests": tests}, sort_keys=False, width=100
    )
    return files


def main(argv: list[str]) -> int:
    files = fixture_files()
    if "--write" not in argv:
        print(f"{len(files) - 1} cases; --write to write them under {CHECK_DIR}")
        return 0
    for stale in (CHECK_DIR / DERIVED_DIR).glob("*.yaml"):
        if f"{DERIVED_DIR}/{stale.name}" not in files:
            stale.unlink()
    for relative, content in files.items():
        target = CHECK_DIR / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    print(f"wrote {len(files) - 1} cases under {CHECK_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
