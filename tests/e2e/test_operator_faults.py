"""Issue 16's fault matrix on the real cluster: each fault injected for real, then status,
Events, the warehouse and the published version are checked, and the next run must complete.

- a stage pod's process SIGKILLed from its node at a pause point (ingest mid-transaction,
  transform mid-dbt, publish with the new rows staged in Redis);
- the API server stopped while a stage runs, the stage finishing while it is down, then
  started again;
- the whole local cluster stopped and started (`cluster.sh down` / `up`, state kept) during
  a run;
- the warehouse volume full during ingest (a tmpfs of 24 MiB behind a static PersistentVolume:
  the local provisioner's hostPath volumes ignore their size), then grown.

The pipeline is the example (customers and orders from the demo API on this host, dbt, Redis)
without its checks and KPIs, so a run is ingest → transform → publish. The pause points come
from `duckherd_jobs.fault_points`, armed through `spec.pod.env` (tests/e2e/node_faults.py).

`make test` runs the first case (ingest killed inside its transaction on the first run); the
rest is marked `fault_matrix` and runs with `make bench-faults` (DUCKHERD_FAULT_MATRIX=1),
which also writes the table of outcomes (DUCKHERD_CLUSTER_FAULT_TABLE). docs/faults.md.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
import redis as redis_client

from duckherd_jobs.demo_source import DemoSource
from tests.e2e.conftest import Cluster, kubectl, kubectl_json, wait_until
from tests.e2e.node_faults import (
    claim_directory,
    cluster_sh,
    container_host_pid,
    leftovers,
    need_local_node,
    newest_pod,
    pause_env,
    paused_pid,
    release,
    release_on_node,
    sigkill_stage,
    snapshot_warehouse,
    wait_gone,
    wait_paused,
)
from tests.e2e.operator_support import (
    REACTION_TIMEOUT,
    RUN_TIMEOUT,
    Operator,
    apply_manifest,
    apply_secret,
    condition,
    events_for,
    get_pipeline,
    jobs_of_run,
    load_example,
    patch_spec,
    run_now,
    wait_run_finished,
)
from tests.jobs.fault_support import fill, normal_cursor, small_volume
from tests.services import RedisServer

pytestmark = pytest.mark.e2e

NAME = "customer-analytics"
CUSTOMERS = 2_000
MART = "marts.customer_analytics"
REDIS_DB = 6
STAGES = ["ingest", "transform", "publish"]
# Table → its key; source → (its raw table, its cursor column).
KEYS = {
    "raw.customers": "customer_id",
    "raw.orders": "order_id",
    "marts.customer_analytics": "customer_id",
    "marts.orders": "order_id",
}
CURSORS = {"customers": ("raw.customers", "updated_at"), "orders": ("raw.orders", "ordered_at")}
KILLED = "was killed (SIGKILL, exit 137) before it finished"


@dataclass
class Outcome:
    """One row of the cluster's fault table."""

    fault: str
    right_after: str = ""
    said: str = ""
    next_run: str = ""
    rows_lost: int = 0
    rows_duplicated: int = 0


RESULTS: list[Outcome] = []


def write_fault_table() -> None:
    target = os.environ.get("DUCKHERD_CLUSTER_FAULT_TABLE")
    if not target or not RESULTS:
        return
    lines = [
        "| fault (on the cluster) | right after it | status / Event said | next run "
        "| rows lost | rows duplicated |",
        "|---|---|---|---|---|---|",
    ]
    for o in RESULTS:
        said = o.said.replace("|", "/")
        lines.append(
            f"| {o.fault} | {o.right_after} | {said} | {o.next_run} | {o.rows_lost} "
            f"| {o.rows_duplicated} |"
        )
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    Path(target).write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------ what the warehouse holds


@dataclass(frozen=True)
class Holdings:
    """Per table (absent: not there): rows and distinct keys; per source: its cursor and the
    largest value of its cursor column."""

    tables: dict[str, tuple[int, int]]
    cursors: dict[str, tuple[str | None, str | None]]


def read_holdings(warehouse: Path) -> Holdings:
    """Opens the copy read-write first (replaying the log, as the next stage would): a
    warehouse that does not open fails here."""
    with duckdb.connect(str(warehouse)) as connection:
        connection.execute("CHECKPOINT")
        present = {
            f"{schema}.{table}"
            for schema, table in connection.execute(
                "SELECT schema_name, table_name FROM duckdb_tables()"
            ).fetchall()
        }
        tables = {}
        for table, key in KEYS.items():
            if table in present:
                row = connection.execute(
                    f"SELECT count(*), count(DISTINCT {key}) FROM {table}"
                ).fetchone()
                assert row is not None
                tables[table] = (int(row[0]), int(row[1]))
        saved: dict[str, str] = {}
        if "_duckherd.state" in present:
            saved = dict(
                connection.execute("SELECT source, cursor_value FROM _duckherd.state").fetchall()
            )
        cursors: dict[str, tuple[str | None, str | None]] = {}
        for source, (table, column) in CURSORS.items():
            top = None
            if table in present:
                found = connection.execute(f"SELECT CAST(max({column}) AS VARCHAR) FROM {table}")
                top = (found.fetchone() or (None,))[0]
            cursors[source] = (saved.get(source), top)
    return Holdings(tables, cursors)


@dataclass(frozen=True)
class Published:
    run_id: str | None
    rows: int


@dataclass
class Faulted:
    """The module's pipeline and what its source, warehouse and Redis hold."""

    namespace: str
    api: DemoSource
    redis: RedisServer
    scratch: Path
    manifest: dict[str, Any]

    @property
    def expected(self) -> dict[str, int]:
        orders = len(self.api.orders)
        return {
            "raw.customers": CUSTOMERS,
            "raw.orders": orders,
            MART: CUSTOMERS,
            "marts.orders": orders,
        }

    def set_faults(self, env: list[dict[str, str]], backoff_limit: int) -> None:
        """Arm (or disarm) pause points; returns once the operator acted on the change (its
        children carry it, and a run-now Job is built from it)."""
        patch_spec(self.namespace, NAME, {"pod": {"env": env}, "backoffLimit": backoff_limit})
        generation = get_pipeline(self.namespace, NAME)["metadata"]["generation"]
        wait_until(
            f"status.observedGeneration {generation}",
            lambda: (
                get_pipeline(self.namespace, NAME).get("status", {}).get("observedGeneration")
                == generation
            ),
            timeout=REACTION_TIMEOUT,
        )

    def run_now(self) -> str:
        return run_now(self.namespace, NAME)

    def job(self, run_id: str, stage: str) -> str:
        names: list[str] = wait_until(
            f"the {stage} Job of run {run_id}",
            lambda: jobs_of_run(self.namespace, NAME, run_id).get(stage),
            timeout=RUN_TIMEOUT,
            interval=1,
        )
        (name,) = names
        return name

    def holdings(self) -> Holdings:
        directory = claim_directory(self.namespace, f"{NAME}-warehouse")
        return read_holdings(snapshot_warehouse(directory, self.scratch / uuid.uuid4().hex))

    def leftovers(self) -> list[str]:
        return leftovers(claim_directory(self.namespace, f"{NAME}-warehouse"))

    def published(self) -> Published:
        prefix = f"duckherd:{self.namespace}:{NAME}:{MART}"
        client = redis_client.Redis.from_url(self.redis.url(db=REDIS_DB), decode_responses=True)
        try:
            meta = client.get(f"{prefix}:meta")
            rows = int(client.hlen(f"{prefix}:rows"))
        finally:
            client.close()
        return Published(json.loads(meta)["runId"] if meta else None, rows)

    def complete_run(self, outcome: Outcome) -> dict[str, Any]:
        """Run-now with no fault armed: it must complete and leave exactly the source's rows;
        the rows lost and duplicated are counted into `outcome`."""
        self.set_faults([], backoff_limit=0)
        run_id = self.run_now()
        pipeline = wait_run_finished(self.namespace, NAME, run_id)
        last = pipeline["status"]["lastRun"]
        assert last["result"] == "Succeeded", last
        assert [(s["stage"], s["result"]) for s in last["stages"]] == [
            (stage, "Succeeded") for stage in STAGES
        ]
        outcome.next_run = "completes"
        held, published = self.holdings(), self.published()
        lost, outcome.rows_duplicated = lost_and_duplicated(held, self.expected)
        outcome.rows_lost = lost + max(0, CUSTOMERS - published.rows)
        assert_consistent(held, self.expected)
        assert published.run_id == run_id
        assert held.tables == {t: (n, n) for t, n in self.expected.items()}
        assert published.rows == CUSTOMERS
        assert self.leftovers() == []
        return pipeline


def assert_consistent(held: Holdings, expected: dict[str, int], incremental: bool = True) -> None:
    """No table holds a partial or duplicated load; every cursor matches its data."""
    for table, (rows, distinct) in held.tables.items():
        assert rows == distinct, f"{table}: {rows - distinct} duplicated rows"
        assert rows == expected[table], f"{table}: {rows} rows, the source has {expected[table]}"
    for source, (cursor, top) in held.cursors.items() if incremental else ():
        assert normal_cursor(cursor) == normal_cursor(top), (source, cursor, top)


def lost_and_duplicated(held: Holdings, expected: dict[str, int]) -> tuple[int, int]:
    """Source rows whose key is missing from a table, and rows beyond the distinct keys."""
    lost = sum(max(0, n - held.tables.get(table, (0, 0))[1]) for table, n in expected.items())
    return lost, sum(rows - distinct for rows, distinct in held.tables.values())


def describe(held: Holdings) -> str:
    if not held.tables:
        return "warehouse opens, no raw or mart table (nothing committed)"
    counts = ", ".join(f"{t} {n}" for t, (n, _) in sorted(held.tables.items()))
    return f"warehouse opens, all tables whole ({counts})"


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def faulted(
    cluster: Cluster,
    operator: Operator,
    pipeline_namespace: str,
    demo_api: DemoSource,
    redis: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Faulted]:
    """The example (checks and KPIs left out, Redis its only target, no Job retries) applied
    in the module's namespace; the fault table is written once the module is done."""
    need_local_node(cluster)
    url = redis.url(host=cluster.need_host_ip(), db=REDIS_DB)
    apply_secret(pipeline_namespace, "duckherd-cache", {"url": url})
    manifest = load_example(demo_api.url, publish=True)
    spec = manifest["spec"]
    spec.pop("quality", None)
    spec.pop("metrics", None)
    spec["publish"] = [target for target in spec["publish"] if "redis" in target]
    spec["backoffLimit"] = 0
    apply_manifest(manifest, pipeline_namespace)
    scratch = tmp_path_factory.mktemp("cluster-faults")
    yield Faulted(pipeline_namespace, demo_api, redis, scratch, manifest)
    write_fault_table()


def stage_failed_event(namespace: str, job: str, words: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        for event in events_for(namespace, NAME):
            message = event.get("message", "")
            if event["reason"] == "StageFailed" and job in message and words in message:
                return event
        return None

    event: dict[str, Any] = wait_until(
        f"a StageFailed Event for {job} saying {words!r}", found, timeout=REACTION_TIMEOUT
    )
    return event


# ------------------------------------------------------------------ a stage pod SIGKILLed

KILLS = [
    ("ingest", "ingest.load.table-written"),
    ("transform", "transform.model-built"),
    ("publish", "publish.redis.staged"),
]
# The one case make test affords (about 30 s plus the operator's install); the rest: bench-faults.
IN_MAKE_TEST = {"ingest.load.table-written"}


def kill_case(stage: str, point: str) -> Any:
    marks = [] if point in IN_MAKE_TEST else [pytest.mark.fault_matrix]
    return pytest.param(stage, point, id=point, marks=marks)


@pytest.mark.parametrize(("stage", "point"), [kill_case(s, p) for s, p in KILLS])
def test_a_stage_pod_killed_on_its_node(faulted: Faulted, stage: str, point: str) -> None:
    """SIGKILL from the node at a pause point, no retry (backoffLimit 0): the run fails and
    says the pod was killed, the warehouse and Redis hold a whole version, and the next run
    completes with the source's rows."""
    ns = faulted.namespace
    outcome = Outcome(fault=f"stage pod SIGKILLed on its node: {stage} at `{point}`")
    published_before = faulted.published()
    faulted.set_faults(pause_env(point), backoff_limit=0)
    run_id = faulted.run_now()
    job = faulted.job(run_id, stage)
    pod, pid = wait_paused(ns, job, point)
    sigkill_stage(pod, pid)

    pipeline = wait_run_finished(ns, NAME, run_id)
    last = pipeline["status"]["lastRun"]
    assert last["result"] == "Failed", last
    stages = {s["stage"]: s for s in last["stages"]}
    assert stages[stage]["result"] == "Failed"
    assert KILLED in stages[stage]["message"], stages[stage]
    later = STAGES[STAGES.index(stage) + 1 :]
    assert all(stages[s]["result"] == "Pending" for s in later), last
    assert set(jobs_of_run(ns, NAME, run_id)) == set(STAGES[: STAGES.index(stage) + 1])
    data = condition(pipeline, "DataReady")
    reason = "PublishFailed" if stage == "publish" else "RunFailed"
    assert data is not None and (data["status"], data["reason"]) == ("False", reason), data
    event = stage_failed_event(ns, job, KILLED)
    outcome.said = f"run Failed; StageFailed: “{event['message'].split(': ', 1)[1][:160]}…”"

    held = faulted.holdings()
    assert_consistent(held, faulted.expected)
    assert faulted.published() == published_before, "Redis still holds the previous version"
    outcome.right_after = f"{describe(held)}; Redis: previous version ({published_before.rows})"

    faulted.complete_run(outcome)
    RESULTS.append(outcome)


# ------------------------------------------------------------------ the API server restarted


def job_pods(namespace: str, job: str) -> list[str]:
    pods = kubectl_json("get", "pods", "-n", namespace, "-l", f"job-name={job}")["items"]
    return [pod["metadata"]["name"] for pod in pods]


@pytest.mark.fault_matrix
def test_the_api_server_stopped_while_a_stage_finishes(
    faulted: Faulted, operator: Operator
) -> None:
    """The transform waits at `transform.built`; the API server is stopped, the transform is
    let go (through its emptyDir on the node) and finishes while nobody can be told, then the
    API server starts again: the run completes, one Job and one pod per stage."""
    ns = faulted.namespace
    outcome = Outcome(fault="API server stopped mid-transform, the stage finishing meanwhile")
    point = "transform.built"
    faulted.set_faults(pause_env(point), backoff_limit=1)
    run_id = faulted.run_now()
    job = faulted.job(run_id, "transform")
    pod, _ = wait_paused(ns, job, point)
    host_pid = container_host_pid(pod)
    stopped = time.monotonic()
    cluster_sh("stop", "kube-apiserver")
    try:
        release_on_node(pod, point)
        wait_gone(host_pid)
    finally:
        cluster_sh("start", "kube-apiserver")
    print(f"[e2e timing] API server down (s): {time.monotonic() - stopped:.1f}", flush=True)

    pipeline = wait_run_finished(ns, NAME, run_id)
    last = pipeline["status"]["lastRun"]
    assert last["result"] == "Succeeded", last
    assert [(s["stage"], s["result"]) for s in last["stages"]] == [
        (stage, "Succeeded") for stage in STAGES
    ]
    runs = jobs_of_run(ns, NAME, run_id)
    assert {stage: len(names) for stage, names in runs.items()} == dict.fromkeys(STAGES, 1)
    assert len(job_pods(ns, job)) == 1, "the transform was not retried: it had finished"
    assert pipeline["status"]["observedGeneration"] == pipeline["metadata"]["generation"]
    assert condition(pipeline, "DataReady")["status"] == "True"  # type: ignore[index]
    operator.ready_pod()
    held = faulted.holdings()
    assert_consistent(held, faulted.expected)
    outcome.right_after = f"run Succeeded, one Job and one pod per stage; {describe(held)}"
    outcome.said = "RunSucceeded"

    faulted.complete_run(outcome)
    RESULTS.append(outcome)


# ------------------------------------------------------------------ the whole cluster restarted


def finish_after_restart(faulted: Faulted, run_id: str, job: str, point: str) -> dict[str, Any]:
    """Wait for the interrupted run to end; a retry of the stage stops at the same point
    again (its env is armed) and is let go."""
    ns, released = faulted.namespace, set()
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        last = get_pipeline(ns, NAME).get("status", {}).get("lastRun") or {}
        if last.get("id") == run_id and last.get("result") not in (None, "Running"):
            return get_pipeline(ns, NAME)
        pod = newest_pod(ns, job)
        fresh = pod is not None and pod["metadata"]["uid"] not in released
        if pod is not None and fresh and paused_pid(ns, pod, point) is not None:
            release(ns, pod, point)
            released.add(pod["metadata"]["uid"])
        time.sleep(2)
    raise TimeoutError(f"run {run_id} did not end within {RUN_TIMEOUT:.0f}s of the restart")


@pytest.mark.fault_matrix
def test_the_whole_cluster_stopped_and_started_during_a_run(
    faulted: Faulted, operator: Operator
) -> None:
    """`cluster.sh down` while the transform waits mid-dbt (every pod's processes are
    killed, the network and mounts go), then `cluster.sh up` with the state
    kept: the operator comes back, the interrupted run ends in a clear status, the warehouse
    opens and is whole, and the next run completes."""
    ns = faulted.namespace
    # A transform point: with the source unchanged since the last run, ingest loads no rows
    # and reaches no load point; dbt always builds.
    outcome = Outcome(fault="whole local cluster stopped and started (`down`/`up`) mid-dbt")
    point = "transform.model-built"
    faulted.set_faults(pause_env(point), backoff_limit=1)
    run_id = faulted.run_now()
    job = faulted.job(run_id, "transform")
    first, _ = wait_paused(ns, job, point)
    started = time.monotonic()
    try:
        cluster_sh("down")
    finally:
        cluster_sh("up")
    print(f"[e2e timing] cluster down + up (s): {time.monotonic() - started:.1f}", flush=True)
    operator.ready_pod()

    pipeline = finish_after_restart(faulted, run_id, job, point)
    last = pipeline["status"]["lastRun"]
    (transform,) = [s for s in last["stages"] if s["stage"] == "transform"]
    pods = job_pods(ns, job)
    if last["result"] == "Succeeded":
        assert len(pods) >= 2, f"the interrupted pod {first['metadata']['name']} was retried"
        outcome.right_after = f"run Succeeded after the transform Job retried ({len(pods)} pods)"
    else:
        assert last["result"] == "Failed" and transform["message"], last
        outcome.right_after = f"run Failed: {transform['message'][:160]}"
    held = faulted.holdings()
    assert_consistent(held, faulted.expected)
    outcome.right_after += f"; {describe(held)}"
    outcome.said = f"run {last['result']}"

    faulted.complete_run(outcome)
    RESULTS.append(outcome)


# ------------------------------------------------------------------ a full volume

VOLUME_SIZE = "24Mi"
FULL_NAME = "full-volume"


@dataclass
class SizedVolume:
    """A tmpfs of a given size on the node, offered as a static PersistentVolume bound to one
    claim: a volume that really fills up (the local provisioner ignores sizes)."""

    directory: Path
    claim: str
    pv: str

    def grow(self, size: str) -> None:
        """Online, as a CSI driver's expansion would: the filesystem itself gets bigger."""
        mebibytes = (
            int(size.removesuffix("Mi"))
            if size.endswith("Mi")
            else 1024 * int(size.removesuffix("Gi"))
        )
        subprocess.run(
            ["mount", "-o", f"remount,size={mebibytes}m", str(self.directory)], check=True
        )


@pytest.fixture
def sized_volume(faulted: Faulted, tmp_path: Path) -> Iterator[SizedVolume]:
    pv = f"duckherd-e2e-full-{uuid.uuid4().hex[:6]}"
    claim = f"{FULL_NAME}-warehouse"
    with small_volume(tmp_path / "volume", "24m") as directory:
        volume = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv, "labels": {"duckherd.io/e2e": "true"}},
            "spec": {
                "capacity": {"storage": VOLUME_SIZE},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": str(directory), "type": "Directory"},
                "claimRef": {"namespace": faulted.namespace, "name": claim},
            },
        }
        pvc = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "volumeName": pv,
                "resources": {"requests": {"storage": VOLUME_SIZE}},
            },
        }
        kubectl("apply", "-f", "-", input=json.dumps(volume))
        apply_manifest(pvc, faulted.namespace)
        try:
            yield SizedVolume(directory, claim, pv)
        finally:
            ns = faulted.namespace
            kubectl(
                "delete",
                "datapipeline",
                FULL_NAME,
                "-n",
                ns,
                "--ignore-not-found",
                "--timeout=120s",
                check=False,
            )
            kubectl("delete", "pvc", claim, "-n", ns, "--timeout=120s", check=False)
            kubectl("delete", "pv", pv, "--wait=false", check=False)


def full_volume_manifest(faulted: Faulted, claim: str) -> dict[str, Any]:
    """The example's ingest and transform on the sized claim; every run reloads every row
    (replace, no cursor), so every ingest needs room."""
    manifest = load_example(faulted.api.url)
    manifest["metadata"]["name"] = FULL_NAME
    spec = manifest["spec"]
    for key in ("quality", "metrics"):
        spec.pop(key, None)
    for source in spec["sources"]:
        source.pop("incremental", None)
        source["writeDisposition"] = "replace"
    spec["storage"] = {"existingClaim": claim}
    spec["backoffLimit"] = 0
    return manifest


def run_full(namespace: str) -> dict[str, Any]:
    return wait_run_finished(namespace, FULL_NAME, run_now(namespace, FULL_NAME))


@pytest.mark.fault_matrix
def test_ingest_on_a_full_volume_says_what_to_grow_it_to(
    faulted: Faulted, sized_volume: SizedVolume
) -> None:
    ns = faulted.namespace
    outcome = Outcome(fault=f"warehouse volume full during ingest ({VOLUME_SIZE} tmpfs PV)")
    apply_manifest(full_volume_manifest(faulted, sized_volume.claim), ns)
    wait_until(
        "the full-volume pipeline observed",
        lambda: get_pipeline(ns, FULL_NAME).get("status", {}).get("observedGeneration") == 1,
        timeout=REACTION_TIMEOUT,
    )
    first = run_full(ns)
    assert first["status"]["lastRun"]["result"] == "Succeeded", first["status"]["lastRun"]
    expected = faulted.expected
    assert_consistent(
        read_holdings(snapshot_warehouse(sized_volume.directory, faulted.scratch / "full-1")),
        expected,
        incremental=False,
    )
    fill(sized_volume.directory)

    failed = run_full(ns)
    last = failed["status"]["lastRun"]
    assert last["result"] == "Failed", last
    message = last["stages"][0]["message"]
    assert message.startswith("the warehouse volume is full ("), message
    grow_to = re.search(r"grow it to at least (\d+(?:Mi|Gi)) \(spec\.storage\.size", message)
    assert grow_to, message
    event = wait_until(
        "a StageFailed Event saying the volume is full",
        lambda: [
            e
            for e in events_for(ns, FULL_NAME)
            if e["reason"] == "StageFailed" and "the warehouse volume is full" in e["message"]
        ],
        timeout=REACTION_TIMEOUT,
    )[0]
    assert f"grow it to at least {grow_to.group(1)}" in event["message"]
    held = read_holdings(snapshot_warehouse(sized_volume.directory, faulted.scratch / "full-2"))
    assert_consistent(held, expected, incremental=False)
    outcome.said = "StageFailed: “" + re.sub(r"\(/[^:]*: ", "(", message.split(" (spec.")[0]) + "”"
    outcome.right_after = describe(held)

    sized_volume.grow(grow_to.group(1))
    grown = run_full(ns)
    assert grown["status"]["lastRun"]["result"] == "Succeeded", grown["status"]["lastRun"]
    held = read_holdings(snapshot_warehouse(sized_volume.directory, faulted.scratch / "full-3"))
    outcome.rows_lost, outcome.rows_duplicated = lost_and_duplicated(held, expected)
    assert held.tables == {t: (n, n) for t, n in expected.items()}
    assert leftovers(sized_volume.directory) == []
    outcome.next_run = f"completes after `mount -o remount,size=` to {grow_to.group(1)}"
    RESULTS.append(outcome)
