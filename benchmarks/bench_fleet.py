"""P1: a fleet of DataPipelines on one operator, on the real local cluster (hack/cluster).

    python -m benchmarks.bench_fleet                                  # N = 100, 300, 1000
    BENCH_FLEET_SIZES=100 BENCH_FLEET_RUNS=20 python -m benchmarks.bench_fleet
    BENCH_FLEET_SIZES=100 BENCH_FLEET_VALUES=resources.requests.cpu=50m python -m ...

Needs root and the local cluster (`hack/cluster/cluster.sh up` is run first: it rebuilds the
project image from this checkout). On a shared machine run it under the e2e lock
(`flock /tmp/duckherd-e2e.lock ...`): it installs the chart and loads the one cluster.

For each N, with a freshly installed operator (the chart as a user installs it):

- **create**: `kubectl apply` of N DataPipelines of the example's shape (no publish; ingest
  schedules spread over the day, none within the next two hours) until all N x 5 children
  (spec ConfigMap, warehouse PVC, three CronJobs) exist, side by side with the baseline:
  `kubectl apply` of the same rendered children directly (no ownerReferences) into another
  namespace. `ratio` is operator over baseline; the goal is at most 1.5.
- **rest**: once every pipeline has status, one resync round to settle, then two rounds
  (`duckherd_resync_rounds_total`) measured: the operator's API requests per minute by verb
  as the API server counts them (FlowSchemas matching only the operator's ServiceAccount,
  tests/e2e/operator_support.counting_requests; a watch counts when it is opened), and its
  CPU seconds per minute (`process_cpu_seconds_total`; the benchmark scrapes the operator's
  metrics every 10 s meanwhile, and that cost is included). Goal: no writes.
- **churn**: BENCH_FLEET_RUNS (default 50) more pipelines, ingest only, all started at once
  with `duckherd.io/run-now` against a demo API on this host. Latency is from the moment a
  watch sees the stage Job complete to the moment a watch sees status report it (both watches
  in this process, so their delays cancel). Goal: p99 at most 2 s. Meanwhile the operator's
  CPU seconds, the seconds its threads waited for a CPU (run delay, /proc schedstat) and its
  reconcile passes are counted: where its time goes while the node is full of stage pods.
- **RSS**: the operator process's peak resident memory (`VmHWM`) after all of it. Goal: at
  most 150 MiB at N = 1,000.
- **restart**: then the operator Pod is deleted. Its successor lists the whole fleet and
  resumes every pipeline at once (children applied again: what was applied is noted in the
  process only); the seconds until it has resumed N, its peak RSS and its RSS once a resync
  round has ended (what a restart leaves it holding), and whether a container of it was
  restarted meanwhile (an OOM kill shows here: the peak read is then the surviving
  container's). This is the moment the chart's memory limit
  must hold.

Everything it creates is deleted at the end (namespaces, FlowSchemas, the chart release).
`run_fleet(cluster, size, runs, operator_values)` is reusable (e.g. with monitoring values).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import json
import math
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml
from tests.e2e.conftest import (
    CLUSTER_SH,
    Cluster,
    export_env,
    kubectl,
    local_cluster,
    local_cluster_env,
    restore_env,
    wait_until,
)
from tests.e2e.operator_support import (
    EXAMPLE,
    READ_VERBS,
    WRITE_VERBS,
    Operator,
    counting_requests,
    delete_namespace,
    ensure_restricted_namespace,
    installed_operator,
)

SIZES = [int(n) for n in os.environ.get("BENCH_FLEET_SIZES", "100,300,1000").split(",") if n]
RUNS = int(os.environ.get("BENCH_FLEET_RUNS", "50"))
# Seconds for all sizes together: a size expected to overrun it is skipped (and said so).
BUDGET = float(os.environ.get("BENCH_FLEET_BUDGET", "1500"))
# Extra chart values for the operator (helm --set), comma-separated, e.g. to compare its CPU
# request: BENCH_FLEET_VALUES=resources.requests.cpu=50m
VALUES = tuple(v for v in os.environ.get("BENCH_FLEET_VALUES", "").split(",") if v)
CUSTOMERS = 200  # per churn run: the runs measure the operator, not the stage
VERBS = (*READ_VERBS, *WRITE_VERBS)
ROUNDS = "duckherd_resync_rounds_total"
CREATE_TIMEOUT = 1800.0
RUNS_TIMEOUT = 900.0
MIB = 2**20
# The rest window is counted in resync rounds read from the operator's metrics, scraped this
# often (like a Prometheus scraping every 10 s): the CPU at rest includes those scrapes.
SCRAPE_INTERVAL = 10.0


# ------------------------------------------------------------------------------ manifests


def spread_schedules(count: int, now: datetime) -> list[str]:
    """`count` daily cron schedules spread over 20 hours starting two hours from `now` (UTC),
    so none fires while the benchmark runs."""
    start = now.hour * 60 + now.minute + 120
    minutes = [(start + index * 1200 // max(count, 1)) % 1440 for index in range(count)]
    return [f"{minute % 60} {minute // 60} * * *" for minute in minutes]


def fleet_pipelines(count: int, source_url: str, prefix: str = "fleet") -> list[dict[str, Any]]:
    """The example pipeline without publish, `count` times under numbered names; each source
    reads the demo API's path named like it (`source_url` is the API's base URL)."""
    example: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    example["spec"].pop("publish", None)
    for source in example["spec"]["sources"]:
        source["http"]["url"] = f"{source_url}/{source['name']}"
    pipelines = []
    for index, schedule in enumerate(spread_schedules(count, datetime.now(UTC))):
        pipeline = copy.deepcopy(example)
        pipeline["metadata"] = {"name": f"{prefix}-{index:04d}"}
        pipeline["spec"]["schedule"] = schedule
        pipelines.append(pipeline)
    return pipelines


# What an ingest-only pipeline keeps of the example's spec (everything else adds a stage).
INGEST_ONLY = ("schedule", "timeZone", "freshness", "sources", "storage")


def churn_pipelines(count: int, source_url: str) -> list[dict[str, Any]]:
    """Ingest-only pipelines: the example's sources, schedule, freshness and storage."""
    pipelines = fleet_pipelines(count, source_url, prefix="churn")
    for pipeline in pipelines:
        spec = pipeline["spec"]
        pipeline["spec"] = {key: spec[key] for key in INGEST_ONLY if key in spec}
    return pipelines


def rendered_children(pipelines: list[dict[str, Any]], namespace: str, image: str) -> list[Any]:
    """What the operator would apply for `pipelines`, without ownerReferences (their owner
    does not exist in the baseline namespace; the garbage collector would delete them)."""
    from duckherd_operator.builders import build_children
    from duckherd_operator.validation import parse_pipeline

    children = []
    for manifest in pipelines:
        body = copy.deepcopy(manifest)
        body["metadata"].update(namespace=namespace, uid=str(uuid.uuid4()), generation=1)
        parsed = parse_pipeline(body).pipeline
        assert parsed is not None, parsed
        for child in build_children(dataclasses.replace(parsed, image=image)):
            child["metadata"].pop("ownerReferences", None)
            children.append(child)
    return children


# ------------------------------------------------------------------------------ cluster reads


def _count(path: str) -> int:
    """Objects in a collection, from one list of one item (`remainingItemCount`)."""
    answer = json.loads(kubectl("get", "--raw", f"{path}?limit=1"))
    return len(answer["items"]) + int(answer["metadata"].get("remainingItemCount") or 0)


def children_count(namespace: str) -> int:
    """ConfigMaps (without the namespace's own kube-root-ca.crt), PVCs and CronJobs."""
    return (
        _count(f"/api/v1/namespaces/{namespace}/configmaps")
        - 1
        + _count(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims")
        + _count(f"/apis/batch/v1/namespaces/{namespace}/cronjobs")
    )


def fresh_namespace(kind: str) -> str:
    name = f"bench-{kind}-{uuid.uuid4().hex[:6]}"
    ensure_restricted_namespace(name)
    wait_until(
        f"{name}/kube-root-ca.crt",
        lambda: kubectl("get", "configmap", "kube-root-ca.crt", "-n", name, check=False),
        timeout=120,
    )
    return name


def apply_all(items: list[dict[str, Any]], namespace: str) -> None:
    document = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    kubectl("apply", "-n", namespace, "-f", "-", input=document, timeout=CREATE_TIMEOUT)


def timed_creation(items: list[dict[str, Any]], namespace: str, children: int) -> float:
    """Seconds from the start of `kubectl apply` until `children` children exist."""
    start = time.monotonic()
    apply_all(items, namespace)
    wait_until(
        f"{children} children in {namespace}",
        lambda: children_count(namespace) >= children,
        timeout=CREATE_TIMEOUT,
        interval=0.5,
    )
    return time.monotonic() - start


def observed_count(namespace: str) -> int:
    generations = kubectl(
        "get",
        "datapipelines",
        "-n",
        namespace,
        "-o",
        "jsonpath={range .items[*]}{.status.observedGeneration}{'\\n'}{end}",
        timeout=300,
    )
    return sum(1 for line in generations.split() if line == "1")


# ------------------------------------------------------------------------------ measurements


@dataclass
class FleetResult:
    size: int
    create_seconds: float = math.nan
    baseline_seconds: float = math.nan
    rest_minutes: float = math.nan
    rest_requests: dict[str, float] = field(default_factory=dict)  # verb → per minute
    rest_cpu_per_minute: float = math.nan
    rest_rss_mib: float = math.nan
    create_requests: dict[str, float] = field(default_factory=dict)  # verb → total
    latencies: list[float] = field(default_factory=list)
    # While the runs finish: the operator's CPU seconds, seconds its threads were ready to run
    # but waited for a CPU (the kernel's run delay), and its reconcile passes.
    churn_cpu_seconds: float = math.nan
    churn_cpu_wait_seconds: float = math.nan
    churn_passes: float = math.nan
    runs: int = 0
    runs_succeeded: int = 0
    duplicate_jobs: int = 0
    peak_rss_mib: float = math.nan
    # The operator Pod deleted with the whole fleet present: its successor's peak resident
    # memory and seconds until it resumed every pipeline (the worst moment for memory).
    restart_peak_rss_mib: float = math.nan
    restart_rest_rss_mib: float = math.nan
    restart_seconds: float = math.nan
    notes: list[str] = field(default_factory=list)
    seconds: float = math.nan  # the whole measurement of this N, set up and cleaned up

    @property
    def ratio(self) -> float:
        return self.create_seconds / self.baseline_seconds

    def latency(self, quantile: float) -> float:
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, math.ceil(quantile * len(ordered)) - 1)]


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {verb: after[verb] - before[verb] for verb in after}


def measure_rest(operator: Operator, counter: Any, result: FleetResult) -> None:
    """One resync round to settle, then two measured: requests by verb and CPU per minute."""

    def rounds_after(start: float, rounds: int) -> None:
        wait_until(
            f"{rounds} resync rounds",
            lambda: operator.metric(ROUNDS) >= start + rounds,
            timeout=900,
            interval=SCRAPE_INTERVAL,
        )

    rounds_after(operator.metric(ROUNDS), 1)
    start_round, start = operator.metric(ROUNDS), time.monotonic()
    counts, cpu = counter.counts(), operator.metric("process_cpu_seconds_total")
    rounds_after(start_round, 2)
    minutes = (time.monotonic() - start) / 60
    result.rest_minutes = minutes
    result.rest_requests = {v: n / minutes for v, n in _delta(counter.counts(), counts).items()}
    result.rest_cpu_per_minute = (operator.metric("process_cpu_seconds_total") - cpu) / minutes
    result.rest_rss_mib = operator.rss_bytes() / MIB


def measure_restart(operator: Operator, size: int, result: FleetResult) -> None:
    """Delete the operator Pod; once its successor has resumed all `size` pipelines (one
    reconcile pass each) and ended a resync round, read that process's peak memory."""
    old = operator.ready_pod()
    started = time.monotonic()
    kubectl("delete", "pod", "-n", operator.namespace, old, "--wait=false")
    wait_until(
        "a new operator Pod",
        lambda: [p for p in operator.pods() if p["metadata"]["name"] != old],
        timeout=240,
    )
    operator.ready_pod()
    wait_until(
        f"{size} pipelines resumed",
        lambda: reconcile_passes(operator) >= size,
        timeout=CREATE_TIMEOUT,
        interval=SCRAPE_INTERVAL,
    )
    result.restart_seconds = time.monotonic() - started
    wait_until(
        "a resync round after the restart",
        lambda: operator.metric(ROUNDS) >= 1,
        timeout=900,
        interval=SCRAPE_INTERVAL,
    )
    result.restart_peak_rss_mib = operator.rss_bytes("VmHWM") / MIB
    result.restart_rest_rss_mib = operator.rss_bytes() / MIB
    result.notes.extend(container_restarts(operator))


def container_restarts(operator: Operator) -> list[str]:
    """What ended the operator's earlier containers in its current Pod (e.g. OOMKilled)."""
    notes = []
    for pod in operator.pods():
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if status.get("restartCount"):
                ended = (status.get("lastState") or {}).get("terminated") or {}
                notes.append(
                    f"operator container restarted {status['restartCount']}x after the Pod "
                    f"was deleted, last ended: {ended.get('reason', 'unknown')}"
                )
    return notes


# ------------------------------------------------------------------------------ churn


def operator_sched(operator: Operator) -> tuple[float, float]:
    """The operator process's seconds on a CPU and seconds waiting for one, summed over its
    threads (/proc/PID/task/*/schedstat: run time and run delay, in nanoseconds)."""
    pod = operator.ready_pod()
    text = kubectl(
        "exec", "-n", operator.namespace, pod, "--", "sh", "-c", "cat /proc/1/task/*/schedstat"
    )
    fields = [line.split() for line in text.splitlines() if line.strip()]
    return sum(int(f[0]) for f in fields) / 1e9, sum(int(f[1]) for f in fields) / 1e9


def reconcile_passes(operator: Operator) -> float:
    """controller_runtime_reconcile_total of the DataPipeline controller, every result."""
    found = re.findall(
        r"^controller_runtime_reconcile_total\{[^}]*\}\s+(\S+)$", operator.metrics(), re.MULTILINE
    )
    return sum(float(value) for value in found)


@dataclass
class RunWatch:
    """When this process's watches saw each stage Job of the runs end, and status report it."""

    job_done: dict[str, float] = field(default_factory=dict)  # Job → monotonic time
    status_done: dict[str, float] = field(default_factory=dict)  # Job → monotonic time
    results: dict[str, str] = field(default_factory=dict)  # pipeline → run result
    jobs: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (pipeline, stage)


# What the Job controller says first when a Job ends (the interim conditions come before
# Complete / Failed); the operator acts on the first, so the clock starts there too.
JOB_ENDED = ("SuccessCriteriaMet", "Complete", "FailureTarget", "Failed")
STAGE_ENDED = ("Succeeded", "Failed", "Blocked")


def _finished(conditions: list[Any] | None) -> bool:
    return any(c.type in JOB_ENDED and c.status == "True" for c in conditions or [])


async def _watch_jobs(
    api_client: Any, namespace: str, watched: RunWatch, runs: dict[str, str]
) -> None:
    from kubernetes_asyncio import client, watch

    api = client.BatchV1Api(api_client)
    async for event in watch.Watch().stream(
        api.list_namespaced_job, namespace, timeout_seconds=int(RUNS_TIMEOUT)
    ):
        job = event["object"]
        labels = job.metadata.labels or {}
        pipeline = labels.get("duckherd.io/pipeline")
        if pipeline not in runs or labels.get("duckherd.io/run-id") != runs[pipeline]:
            continue
        stage = labels.get("duckherd.io/stage", "")
        watched.jobs.setdefault((pipeline, stage), set()).add(job.metadata.name)
        if _finished(job.status.conditions):
            watched.job_done.setdefault(job.metadata.name, time.monotonic())


async def _watch_status(
    api_client: Any, namespace: str, watched: RunWatch, runs: dict[str, str]
) -> None:
    from kubernetes_asyncio import client, watch

    from duckherd.api import GROUP, PLURAL, VERSION

    api = client.CustomObjectsApi(api_client)
    async for event in watch.Watch().stream(
        api.list_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        timeout_seconds=int(RUNS_TIMEOUT),
    ):
        body = event["object"]
        name = body["metadata"]["name"]
        last = (body.get("status") or {}).get("lastRun") or {}
        if name not in runs or last.get("id") != runs[name]:
            continue
        for stage in last.get("stages") or []:
            if stage.get("job") and stage.get("result") in STAGE_ENDED:
                watched.status_done.setdefault(stage["job"], time.monotonic())
        if last.get("result") not in (None, "Running"):
            watched.results[name] = last["result"]
        if len(watched.results) == len(runs):
            return


async def _follow_runs(namespace: str, runs: dict[str, str], value: str) -> RunWatch:
    from kubernetes_asyncio import client, config

    await config.load_kube_config(config_file=os.environ["KUBECONFIG"])
    watched = RunWatch()
    async with client.ApiClient() as api_client:  # closed here, not left to the loop's end
        jobs = asyncio.create_task(_watch_jobs(api_client, namespace, watched, runs))
        statuses = asyncio.create_task(_watch_status(api_client, namespace, watched, runs))
        await asyncio.sleep(2)  # both watches open before the runs start
        names = [f"datapipeline/{name}" for name in runs]
        args = ["annotate", "-n", namespace, *names, f"duckherd.io/run-now={value}", "--overwrite"]
        await asyncio.to_thread(kubectl, *args, timeout=300)
        with contextlib.suppress(TimeoutError):  # reported as runs that did not finish
            await asyncio.wait_for(statuses, RUNS_TIMEOUT)
        jobs.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await jobs
    return watched


def measure_churn(source_url: str, runs: int, result: FleetResult) -> None:
    from duckherd_operator.builders import run_now_job_name

    namespace = fresh_namespace("churn")
    try:
        pipelines = churn_pipelines(runs, source_url)
        timed_creation(pipelines, namespace, runs * 3)  # spec ConfigMap, PVC, ingest CronJob
        wait_until("churn status", lambda: observed_count(namespace) >= runs, timeout=600)
        value = uuid.uuid4().hex
        names = [p["metadata"]["name"] for p in pipelines]
        expected = {name: run_now_job_name(name, value) for name in names}
        watched = asyncio.run(_follow_runs(namespace, expected, value))
    finally:
        delete_namespace(namespace)
    result.runs = runs
    result.runs_succeeded = sum(1 for r in watched.results.values() if r == "Succeeded")
    result.duplicate_jobs = sum(len(names) - 1 for names in watched.jobs.values() if names)
    result.latencies = [
        max(0.0, watched.status_done[job] - done)
        for job, done in watched.job_done.items()
        if job in watched.status_done
    ]
    unfinished = runs - len(watched.results)
    if unfinished:
        result.notes.append(f"{unfinished} of {runs} runs did not finish in {RUNS_TIMEOUT:.0f}s")


# ------------------------------------------------------------------------------ one fleet


def wait_namespaces_gone(names: list[str], timeout: float = 900) -> None:
    def gone() -> bool:
        listed = kubectl("get", "namespaces", "-o", "name", timeout=60).split()
        return not any(f"namespace/{name}" in listed for name in names)

    wait_until("the benchmark's namespaces deleted", gone, timeout=timeout, interval=5)


@contextlib.contextmanager
def fleet_namespaces() -> Iterator[tuple[str, str]]:
    fleet, baseline = fresh_namespace("fleet"), fresh_namespace("baseline")
    try:
        yield fleet, baseline
    finally:
        for name in (fleet, baseline):
            delete_namespace(name)
        wait_namespaces_gone([fleet, baseline])


def no_pipelines_left() -> None:
    """Wait until the cluster holds no DataPipeline. A namespace deleted before (an earlier
    N's, the memory profiler's) goes on terminating for minutes with a fleet in it: an
    operator installed meanwhile resumes those pipelines too, and measures them (seen once:
    creation twice as slow and 323 MiB at rest with a profiler's 1,000 still terminating)."""
    wait_until(
        "no DataPipeline left in the cluster (namespaces of earlier runs still terminating)",
        lambda: not kubectl("get", "datapipelines", "-A", "-o", "name").strip(),
        timeout=900,
        interval=5,
    )


def run_fleet(
    cluster: Cluster, size: int, runs: int, source_url: str, operator_values: tuple[str, ...] = ()
) -> FleetResult:
    """Everything above for one N, with its own operator; the cluster is left as it was."""
    result = FleetResult(size)
    image = cluster.need_image()
    no_pipelines_left()
    with (
        installed_operator(cluster, values=operator_values) as operator,
        counting_requests(operator, {verb: (verb,) for verb in VERBS}) as counter,
        fleet_namespaces() as (fleet, baseline),
    ):
        pipelines = fleet_pipelines(size, source_url)
        before = counter.counts()
        children = rendered_children(pipelines, baseline, image)
        result.create_seconds = timed_creation(pipelines, fleet, len(children))
        result.baseline_seconds = timed_creation(children, baseline, len(children))
        wait_until(
            "every status",
            lambda: observed_count(fleet) >= size,
            timeout=CREATE_TIMEOUT,
            interval=5,
        )
        result.create_requests = _delta(counter.counts(), before)
        measure_rest(operator, counter, result)
        if runs:
            (cpu, wait), passes = operator_sched(operator), reconcile_passes(operator)
            measure_churn(source_url, runs, result)
            (cpu_after, wait_after) = operator_sched(operator)
            result.churn_cpu_seconds = cpu_after - cpu
            result.churn_cpu_wait_seconds = wait_after - wait
            result.churn_passes = reconcile_passes(operator) - passes
        result.peak_rss_mib = operator.rss_bytes("VmHWM") / MIB
        measure_restart(operator, size, result)
    return result


# ------------------------------------------------------------------------------ report


def _per_minute(requests: dict[str, float]) -> str:
    shown = [f"{verb} {rate:.1f}" for verb, rate in requests.items() if rate >= 0.05]
    return ", ".join(shown) or "none"


def print_fleet_table(results: list[FleetResult]) -> None:
    print("\nP1: a fleet on one operator (local cluster, 2 cores; loaded machine: ratios count)")
    header = (
        f"{'N':>5} {'create s':>9} {'baseline s':>10} {'ratio':>6} {'peak RSS MiB':>12} "
        f"{'CPU s/min':>9} {'p50 s':>6} {'p99 s':>6} {'runs ok':>8}  requests/min at rest"
    )
    print(header)
    print("-" * (len(header) + 20))
    for r in results:
        print(
            f"{r.size:>5} {r.create_seconds:>9.1f} {r.baseline_seconds:>10.1f} {r.ratio:>5.2f}x "
            f"{r.peak_rss_mib:>12.0f} {r.rest_cpu_per_minute:>9.2f} {r.latency(0.5):>6.2f} "
            f"{r.latency(0.99):>6.2f} {r.runs_succeeded:>3}/{r.runs:<4}  "
            f"{_per_minute(r.rest_requests)}"
        )
    for r in results:
        creation = {verb: round(n) for verb, n in r.create_requests.items() if n}
        print(
            f"N={r.size}: requests while creating {creation}; RSS at rest "
            f"{r.rest_rss_mib:.0f} MiB; duplicate stage Jobs {r.duplicate_jobs}; "
            f"rest window {r.rest_minutes:.1f} min; while the runs finished: "
            f"{r.churn_passes:.0f} reconcile passes, {r.churn_cpu_seconds:.1f} CPU s, "
            f"{r.churn_cpu_wait_seconds:.1f} s waiting for a CPU; after the operator Pod "
            f"was deleted: every pipeline resumed in {r.restart_seconds:.0f} s, peak RSS "
            f"{r.restart_peak_rss_mib:.0f} MiB, RSS then {r.restart_rest_rss_mib:.0f} MiB"
            + "".join(f"; {n}" for n in r.notes)
        )
    print(json.dumps([dataclasses.asdict(r) for r in results]))


def within_budget(done: list[FleetResult], size: int, spent: float) -> bool:
    """Whether N = `size` is expected to end within BUDGET: its time extrapolated linearly
    from the sizes done so far (with one done, half of its time is taken as fixed cost)."""
    if not done:
        return True
    if len(done) == 1:
        (last,) = done
        expected = last.seconds * (0.5 + 0.5 * size / last.size)
    else:
        low, high = done[-2], done[-1]
        slope = (high.seconds - low.seconds) / max(high.size - low.size, 1)
        expected = high.seconds + slope * (size - high.size)
    return spent + expected <= BUDGET


def main() -> None:
    from duckherd_jobs.demo_source import DemoSource

    if os.geteuid() != 0:
        raise SystemExit("bench_fleet needs root: it brings up the local cluster (hack/cluster)")
    subprocess.run([str(CLUSTER_SH), "up"], check=True)
    env = local_cluster_env()
    saved = export_env(env)
    cluster = local_cluster(env)
    results: list[FleetResult] = []
    began = time.monotonic()
    try:
        with DemoSource(CUSTOMERS, host=cluster.need_host_ip()) as url:
            for size in SIZES:
                if not within_budget(results, size, time.monotonic() - began):
                    print(
                        f"[bench_fleet] N={size} skipped: it would not end within "
                        f"BENCH_FLEET_BUDGET ({BUDGET:.0f}s)",
                        flush=True,
                    )
                    continue
                print(f"[bench_fleet] N={size}", flush=True)
                started = time.monotonic()
                results.append(run_fleet(cluster, size, RUNS, url, VALUES))
                results[-1].seconds = time.monotonic() - started
                print(
                    f"[bench_fleet] N={size} took {results[-1].seconds:.0f}s: "
                    f"{json.dumps(dataclasses.asdict(results[-1]))}",
                    flush=True,
                )
    finally:
        restore_env(saved)
        if results:
            print_fleet_table(results)


if __name__ == "__main__":
    main()
