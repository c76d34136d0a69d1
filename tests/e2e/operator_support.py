"""Helpers of the operator end-to-end tests: helm, the installed operator, pipelines, timings.

The operator is installed with the project's chart exactly as a user would (`helm upgrade
--install ... --wait`) into a namespace that enforces Pod Security "restricted"; the image is
the one the cluster fixture names (DUCKHERD_TEST_IMAGE).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from duckherd_operator.builders import run_now_job_name
from tests.e2e.conftest import Cluster, KubectlError, kubectl, kubectl_json, wait_until

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "duckherd"
EXAMPLE = REPO / "examples" / "customer-analytics" / "pipeline.yaml"
CRD_NAME = "datapipelines.duckherd.io"
RELEASE = "duckherd"
OPERATOR_NAMESPACE_PREFIX = "duckherd-e2e-system"
# A chain starts several pods that import duckdb, dbt and GX: generous, never asserted as speed.
RUN_TIMEOUT = 600.0
# The operator acts on a change within seconds, and its 30 s resync repairs a missed event; on a
# loaded machine (a shared CI host, an operator Pod just restarted) that can still take minutes.
REACTION_TIMEOUT = 240.0


def find_helm() -> str:
    """helm from PATH (the cluster fixture puts hack/cluster's binaries there) or $HELM."""
    found = os.environ.get("HELM") or shutil.which("helm")
    if not found:
        pytest.fail("no helm binary on PATH (hack/cluster builds one) and $HELM is not set")
    return found


def helm(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [find_helm(), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"helm {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result


def split_image(image: str) -> tuple[str, str]:
    """`registry:5000/name:tag` → (`registry:5000/name`, `tag`); no tag → `latest`."""
    repository, _, tag = image.rpartition(":")
    if not repository or "/" in tag:
        return image, "latest"
    return repository, tag


def ensure_restricted_namespace(name: str, labels: dict[str, str] | None = None) -> None:
    manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {
                "duckherd.io/e2e": "true",
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/warn": "restricted",
                **(labels or {}),
            },
        },
    }
    kubectl("apply", "-f", "-", input=json.dumps(manifest))
    # Pods need the namespace's default ServiceAccount to exist before they can be created.
    wait_until(
        f"serviceaccount {name}/default",
        lambda: kubectl("get", "serviceaccount", "default", "-n", name, check=False),
        timeout=180,
    )


def drop_pipeline_finalizers(namespace: str) -> None:
    """A safety net at teardown: whatever finalizer a broken operator build left on a pipeline
    must not keep a test namespace in Terminating forever."""
    names = kubectl("get", "datapipelines", "-n", namespace, "-o", "name", check=False).split()
    for name in names:
        kubectl(
            "patch",
            name,
            "-n",
            namespace,
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
            check=False,
        )


def delete_namespace(name: str) -> None:
    drop_pipeline_finalizers(name)
    kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@contextlib.contextmanager
def restricted_namespace(prefix: str, *, empty_first: bool = False) -> Iterator[str]:
    """A fresh namespace `<prefix>-<hex>` (Pod Security "restricted"), deleted afterwards.

    `empty_first` deletes its DataPipelines before the namespace, for a namespace that goes
    while the operator still runs (the operator releases their finalizers); `delete_namespace`
    drops whatever finalizer is left either way."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    ensure_restricted_namespace(name)
    try:
        yield name
    finally:
        if empty_first:
            kubectl("delete", "datapipelines", "--all", "-n", name, "--timeout=120s", check=False)
        delete_namespace(name)


def _adopt_crd(release: str, namespace: str) -> None:
    """A CRD applied from crds/ (by hand or another test) is handed to this release, the way
    Helm documents adoption, instead of failing the install on ownership metadata."""
    crd = kubectl("get", "crd", CRD_NAME, "--ignore-not-found", "-o", "name")
    if not crd.strip():
        return
    kubectl("label", "crd", CRD_NAME, "app.kubernetes.io/managed-by=Helm", "--overwrite")
    kubectl(
        "annotate",
        "crd",
        CRD_NAME,
        f"meta.helm.sh/release-name={release}",
        f"meta.helm.sh/release-namespace={namespace}",
        "--overwrite",
    )


@dataclass(frozen=True)
class Operator:
    """An installed release of the chart."""

    release: str
    namespace: str
    image: str

    @property
    def fullname(self) -> str:
        return self.release if "duckherd" in self.release else f"{self.release}-duckherd"

    @property
    def service_account(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.fullname}"

    def pods(self) -> list[dict[str, Any]]:
        selector = f"app.kubernetes.io/instance={self.release},app.kubernetes.io/component=operator"
        items: list[dict[str, Any]] = kubectl_json(
            "get", "pods", "-n", self.namespace, "-l", selector
        )["items"]
        return items

    def ready_pod(self) -> str:
        """The name of the operator Pod once it is Ready (and the only one)."""

        def ready() -> str | None:
            pods = [p for p in self.pods() if not p["metadata"].get("deletionTimestamp")]
            if len(pods) != 1:
                return None
            conditions = pods[0].get("status", {}).get("conditions", [])
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                return str(pods[0]["metadata"]["name"])
            return None

        name: str = wait_until("the operator Pod Ready", ready, timeout=240)
        return name

    def logs(self) -> str:
        return kubectl("logs", "-n", self.namespace, self.ready_pod(), "--tail=-1")

    def metrics(self) -> str:
        """The operator's /metrics, through its metrics Service (the API server's proxy)."""
        path = (
            f"/api/v1/namespaces/{self.namespace}/services/"
            f"{self.fullname}-metrics:metrics/proxy/metrics"
        )
        return kubectl("get", "--raw", path, check=False)

    def rss_bytes(self, field: str = "VmRSS") -> int:
        """Resident memory of the operator process (PID 1 of its container): now (`VmRSS`),
        or its peak since it started (`VmHWM`)."""
        status = kubectl(
            "exec", "-n", self.namespace, self.ready_pod(), "--", "cat", "/proc/1/status"
        )
        found = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
        assert found, status
        return int(found.group(1)) * 1024

    def metric(self, name: str) -> float:
        """A sample of the operator's own Prometheus metrics (through the API server's service
        proxy), -1 while it cannot be read."""
        text = self.metrics()
        found = re.search(rf"^{re.escape(name)}\s+(\S+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else -1.0

    def scale(self, replicas: int) -> None:
        kubectl(
            "scale", "deployment", self.fullname, "-n", self.namespace, f"--replicas={replicas}"
        )
        if replicas == 0:
            wait_until("the operator Pod gone", lambda: not self.pods(), timeout=120)
        else:
            self.ready_pod()


def image_values(image: str) -> list[str]:
    """The chart's image values for `repo:tag` or `repo@sha256:...`."""
    if "@" in image:
        repository, digest = image.split("@", 1)
        return ["--set", f"image.repository={repository}", "--set", f"image.digest={digest}"]
    repository, tag = split_image(image)
    return ["--set", f"image.repository={repository}", "--set", f"image.tag={tag}"]


def install_args(cluster: Cluster, release: str, namespace: str, chart: Path) -> list[str]:
    return [
        "upgrade",
        "--install",
        release,
        str(chart),
        "--namespace",
        namespace,
        *image_values(cluster.need_image()),
        "--set",
        "image.pullPolicy=IfNotPresent",
        "--wait",
        "--timeout",
        "5m",
    ]


def _operator_diagnostics(namespace: str) -> str:
    pods = kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False)
    events = kubectl("get", "events", "-n", namespace, check=False)
    logs = kubectl(
        "logs",
        "-n",
        namespace,
        "-l",
        "app.kubernetes.io/component=operator",
        "--tail=40",
        "--all-containers",
        check=False,
    )
    previous = kubectl(
        "logs",
        "-n",
        namespace,
        "-l",
        "app.kubernetes.io/component=operator",
        "--tail=40",
        "--previous",
        check=False,
    )
    return f"pods:\n{pods}\nevents:\n{events}\nlogs:\n{logs}\nprevious logs:\n{previous}"


@contextlib.contextmanager
def installed_operator(
    cluster: Cluster,
    *,
    release: str = RELEASE,
    values: tuple[str, ...] = (),
) -> Iterator[Operator]:
    """`helm upgrade --install` the chart, yield once the operator is Ready, uninstall after.

    Each install gets a fresh namespace: the previous one may still be terminating."""
    namespace = f"{OPERATOR_NAMESPACE_PREFIX}-{uuid.uuid4().hex[:6]}"
    ensure_restricted_namespace(namespace)
    if "crds.enabled=false" not in values:
        _adopt_crd(release, namespace)
    set_flags = [flag for value in values for flag in ("--set", value)]
    try:
        helm(*install_args(cluster, release, namespace, CHART), *set_flags)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{_operator_diagnostics(namespace)}") from None
    operator = Operator(release=release, namespace=namespace, image=cluster.need_image())
    operator.ready_pod()
    try:
        yield operator
    finally:
        helm("uninstall", release, "--namespace", namespace, "--wait", check=False)
        delete_namespace(namespace)


# ------------------------------------------------------------------ the operator's requests

WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
READ_VERBS = ("get", "list", "watch")


def _flow_schema(name: str, operator: Operator, verbs: Sequence[str], precedence: int) -> Any:
    account = {"name": operator.fullname, "namespace": operator.namespace}
    return {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": name, "labels": {"duckherd.io/e2e": "true"}},
        "spec": {
            # Below the built-in exempt/probes/leader-election schemas, above the rest.
            "matchingPrecedence": precedence,
            "priorityLevelConfiguration": {"name": "workload-high"},
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [
                {
                    "subjects": [{"kind": "ServiceAccount", "serviceAccount": account}],
                    "resourceRules": [
                        {
                            "verbs": list(verbs),
                            "apiGroups": ["*"],
                            "resources": ["*"],
                            "namespaces": ["*"],
                            "clusterScope": True,
                        }
                    ],
                }
            ],
        },
    }


class RequestCounter:
    """The operator's API requests as the API server counts them.

    The API server counts the requests it dispatches per FlowSchema (API Priority and
    Fairness, `apiserver_flowcontrol_dispatched_requests_total`). One FlowSchema per group of
    verbs, matching only the operator's ServiceAccount, turns those counters into the
    operator's own request counts (a watch counts once, when it is opened)."""

    def __init__(self, schemas: dict[str, str]) -> None:
        self.schemas = schemas  # group → FlowSchema name

    def counts(self) -> dict[str, float]:
        """group → requests dispatched so far (one read of the API server's metrics)."""
        text = kubectl("get", "--raw", "/metrics")
        counts = dict.fromkeys(self.schemas, 0.0)
        pattern = re.compile(
            r'^apiserver_flowcontrol_dispatched_requests_total\{[^}]*flow_schema="([^"]+)"'
            r"[^}]*\}\s+(\S+)$",
            re.MULTILINE,
        )
        by_schema = {schema: group for group, schema in self.schemas.items()}
        for schema, value in pattern.findall(text):
            if schema in by_schema:
                counts[by_schema[schema]] += float(value)
        return counts


@contextlib.contextmanager
def counting_requests(
    operator: Operator, groups: dict[str, Sequence[str]]
) -> Iterator[RequestCounter]:
    """FlowSchemas counting the operator's requests per group of verbs; deleted afterwards."""
    suffix = uuid.uuid4().hex[:6]
    schemas = {group: f"duckherd-e2e-{group}-{suffix}" for group in groups}
    items = [
        _flow_schema(schemas[group], operator, verbs, 200 + index)
        for index, (group, verbs) in enumerate(groups.items())
    ]
    kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )
    try:
        yield RequestCounter(schemas)
    finally:
        kubectl("delete", "flowschema", *schemas.values(), "--ignore-not-found", check=False)


def can_i(who: str, verb: str, resource: str, namespace: str) -> bool:
    """`kubectl auth can-i` as `who`: the API server's own authorization answer."""
    answer = kubectl(
        "auth", "can-i", verb, resource, "-n", namespace, f"--as={who}", check=False
    ).strip()
    assert answer in ("yes", "no"), answer
    return answer == "yes"


# --------------------------------------------------------------------------- pipelines


def load_example(api: str, *, publish: bool = False) -> dict[str, Any]:
    """The example pipeline, its sources pointed at the demo API at `api` (on this host):
    each http source reads the API path named like it (`/customers`, `/orders`).

    Without `publish` the publish targets are left out (they need Redis and PostgreSQL
    Secrets); test_operator_publish.py runs the example with them."""
    pipeline: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    if not publish:
        pipeline["spec"].pop("publish", None)
    for source in pipeline["spec"]["sources"]:
        if "http" in source:
            source["http"]["url"] = f"{api}/{source['name']}"
    return pipeline


def apply_manifest(manifest: dict[str, Any], namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def apply_secret(namespace: str, name: str, data: dict[str, str]) -> None:
    """A Secret holding `data` (written as stringData), e.g. what a source or target reads."""
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}
    apply_manifest(secret, namespace)


def get_pipeline(namespace: str, name: str) -> dict[str, Any]:
    pipeline: dict[str, Any] = kubectl_json("get", "datapipeline", name, "-n", namespace)
    return pipeline


def patch_spec(namespace: str, name: str, spec: dict[str, Any]) -> None:
    """Merges `spec` into the pipeline's spec (`kubectl patch --type=merge`)."""
    body = json.dumps({"spec": spec})
    kubectl("patch", "datapipeline", name, "-n", namespace, "--type=merge", "-p", body)


def run_now(namespace: str, name: str) -> str:
    """Starts a run with the duckherd.io/run-now annotation; returns the run's id (the name of
    the ingest Job the operator creates for it)."""
    value = uuid.uuid4().hex
    annotation = f"duckherd.io/run-now={value}"
    kubectl("annotate", "datapipeline", name, "-n", namespace, annotation, "--overwrite")
    return run_now_job_name(name, value)


def condition(pipeline: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for item in pipeline.get("status", {}).get("conditions", []):
        if item["type"] == kind:
            return dict(item)
    return None


def stage_jobs(namespace: str, pipeline: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl_json(
        "get", "jobs", "-n", namespace, "-l", f"duckherd.io/pipeline={pipeline}"
    )["items"]
    return items


def jobs_of_run(namespace: str, pipeline: str, run_id: str) -> dict[str, list[str]]:
    """Stage → names of the Jobs labelled with the run id."""
    found: dict[str, list[str]] = {}
    for job in stage_jobs(namespace, pipeline):
        labels = job["metadata"].get("labels", {})
        if labels.get("duckherd.io/run-id") == run_id:
            found.setdefault(labels["duckherd.io/stage"], []).append(job["metadata"]["name"])
    return found


def job_finished(job: dict[str, Any]) -> str | None:
    for item in job.get("status", {}).get("conditions", []):
        if item["status"] == "True" and item["type"] in ("Complete", "Failed"):
            return str(item["type"])
    return None


def wait_run_finished(namespace: str, name: str, run_id: str) -> dict[str, Any]:
    """The pipeline once status.lastRun is run `run_id` and no longer Running."""

    def finished() -> dict[str, Any] | None:
        pipeline = get_pipeline(namespace, name)
        last = pipeline.get("status", {}).get("lastRun") or {}
        if last.get("id") == run_id and last.get("result") not in (None, "Running"):
            return pipeline
        return None

    result: dict[str, Any] = wait_until(
        f"run {run_id} of {namespace}/{name} to finish", finished, timeout=RUN_TIMEOUT, interval=2
    )
    return result


def events_for(namespace: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl_json(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        f"involvedObject.kind=DataPipeline,involvedObject.name={name}",
    )["items"]
    return items


def query_warehouse(
    namespace: str, claim: str, image: str, sql: str, pod_name: str = "warehouse-reader"
) -> list[list[Any]]:
    """Run one read-only query against the warehouse file in a pod that mounts the claim; the
    rows come back through the termination message (at most 4 KiB: keep results small)."""
    from tests.e2e.conftest import pod_manifest, pod_result

    script = (
        "import duckdb, json, sys\n"
        "con = duckdb.connect('/warehouse/warehouse.duckdb', read_only=True)\n"
        "rows = con.execute(sys.argv[1]).fetchall()\n"
        "with open('/dev/termination-log', 'w') as log:\n"
        "    json.dump(rows, log, default=str)\n"
    )
    pod = pod_manifest(
        pod_name,
        image,
        command=["python", "-c", script, sql],
        volumes=[{"name": "warehouse", "persistentVolumeClaim": {"claimName": claim}}],
        volume_mounts=[{"name": "warehouse", "mountPath": "/warehouse", "readOnly": True}],
    )
    kubectl("delete", "pod", pod_name, "-n", namespace, "--ignore-not-found", "--wait=true")
    apply_manifest(pod, namespace)
    try:
        rows: list[list[Any]] = json.loads(pod_result(namespace, pod_name, timeout=300))
    finally:
        kubectl("delete", "pod", pod_name, "-n", namespace, "--wait=false", check=False)
    return rows


def with_changes(manifest: dict[str, Any], **spec_changes: Any) -> dict[str, Any]:
    changed = copy.deepcopy(manifest)
    changed["spec"].update(spec_changes)
    return changed


class Stopwatch:
    """Wall-clock measurements reported by the e2e run (never asserted)."""

    def __init__(self) -> None:
        self.results: dict[str, float] = {}

    def record(self, name: str, seconds: float) -> None:
        self.results[name] = seconds
        print(f"[e2e timing] {name}: {seconds:.2f}", flush=True)

    @staticmethod
    def now() -> float:
        return time.monotonic()


def exists(kind: str, name: str, namespace: str) -> bool:
    try:
        out = kubectl("get", kind, name, "-n", namespace, "--ignore-not-found", "-o", "name")
    except KubectlError:
        return False
    return bool(out.strip())


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler], host: str) -> Iterator[str]:
    """`handler` served from a background thread on `host` (where pods reach this machine);
    yields the server's `http://host:port`."""
    server = ThreadingHTTPServer((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
