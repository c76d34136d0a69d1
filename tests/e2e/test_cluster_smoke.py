"""The cluster is real: nodes, the project image, CronJobs, volumes, Services, the host."""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from duckherd import __version__
from tests.e2e.conftest import (
    RESTRICTED_CONTAINER_SECURITY,
    RESTRICTED_POD_SECURITY,
    Cluster,
    KubectlError,
    apply,
    kubectl_json,
    pod_manifest,
    pod_result,
    wait_pod_phase,
    wait_until,
)

pytestmark = pytest.mark.e2e

Kubectl = Callable[..., str]


def test_node_ready(cluster: Cluster, kubectl: Kubectl) -> None:
    nodes = kubectl_json("get", "nodes")["items"]
    assert nodes, "the cluster has no node"
    for node in nodes:
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready, f"node {node['metadata']['name']} has no Ready condition"
        assert ready[0]["status"] == "True", ready[0]


def test_default_storage_class_exists(cluster: Cluster) -> None:
    classes = kubectl_json("get", "storageclasses")["items"]
    default = [
        sc["metadata"]["name"]
        for sc in classes
        if sc["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class")
        == "true"
    ]
    assert len(default) == 1, f"expected one default StorageClass, got {default}"


def test_project_image_runs_duckherd_version(
    cluster: Cluster, namespace: str, kubectl: Kubectl
) -> None:
    image = cluster.need_image()
    report = ["sh", "-c", "duckherd --version > /dev/termination-log"]
    apply(pod_manifest("version", image, command=report), namespace)
    assert pod_result(namespace, "version").strip() == f"duckherd {__version__}"


def test_cronjob_fires_and_its_job_completes(
    cluster: Cluster, namespace: str, kubectl: Kubectl
) -> None:
    image = cluster.need_python_image()
    token = uuid.uuid4().hex
    pod = pod_manifest("unused", image, command=["python3", "-c", f"print('cron {token}')"])
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "tick"},
        "spec": {
            "schedule": "* * * * *",
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 0,
                    "template": {"metadata": {"labels": {"app": "tick"}}, "spec": pod["spec"]},
                }
            },
        },
    }
    apply(cronjob, namespace)

    def completed_job() -> dict[str, Any] | None:
        for job in kubectl_json("get", "jobs", "-n", namespace)["items"]:
            owners = job["metadata"].get("ownerReferences", [])
            if not any(o["kind"] == "CronJob" and o["name"] == "tick" for o in owners):
                continue
            status = job.get("status", {})
            assert not status.get("failed"), f"job {job['metadata']['name']} failed: {status}"
            if status.get("succeeded"):
                found: dict[str, Any] = job
                return found
        return None

    # A "* * * * *" CronJob fires at the next minute boundary.
    job = wait_until("a Job of CronJob tick to complete", completed_job, timeout=200, interval=2)
    out = kubectl("logs", "-n", namespace, f"job/{job['metadata']['name']}")
    assert f"cron {token}" in out
    last = kubectl_json("get", "cronjob", "tick", "-n", namespace)["status"]
    assert last.get("lastScheduleTime")


def test_pvc_binds_and_data_survives_pods(
    cluster: Cluster, namespace: str, kubectl: Kubectl
) -> None:
    image = cluster.need_python_image()
    token = uuid.uuid4().hex
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "64Mi"}},
        },
    }
    volume = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    mount = [{"name": "data", "mountPath": "/data"}]
    writer = pod_manifest(
        "writer",
        image,
        command=["sh", "-c", f"echo {token} > /data/token && ls -ln /data"],
        volumes=volume,
        volume_mounts=mount,
    )
    apply([pvc, writer], namespace)
    wait_pod_phase(namespace, "writer")
    claim = kubectl_json("get", "pvc", "data", "-n", namespace)
    assert claim["status"]["phase"] == "Bound"
    pv = kubectl_json("get", "pv", claim["spec"]["volumeName"])
    assert pv["spec"]["claimRef"]["name"] == "data"

    reader = pod_manifest(
        "reader",
        image,
        command=["cp", "/data/token", "/dev/termination-log"],
        volumes=volume,
        volume_mounts=mount,
    )
    apply(reader, namespace)
    assert pod_result(namespace, "reader").strip() == token


def _http_server_pod(image: str, token: str) -> dict[str, Any]:
    script = (
        "mkdir -p /tmp/www && cd /tmp/www && echo "
        + token
        + " > index.html && exec python3 -m http.server 8080"
    )
    pod = pod_manifest(
        "web",
        image,
        command=["sh", "-c", script],
        labels={"app": "web"},
        restart_policy="Always",
        ports=[{"containerPort": 8080, "name": "http"}],
    )
    pod["spec"]["containers"][0]["readinessProbe"] = {
        "httpGet": {"path": "/", "port": 8080},
        "periodSeconds": 1,
    }
    return pod


# Python run by client pods: GET each URL, retrying for up to three minutes (Service endpoints,
# kube-proxy rules and DNS records propagate at their own pace on a loaded machine), and report
# one body per line in the termination message (see pod_result). Failed attempts go to stderr:
# they show in `kubectl logs` when a test fails, and never in what the test asserts on.
FETCH = """
import sys, time, urllib.request
bodies = []
for url in sys.argv[1:]:
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                bodies.append(r.read().decode().strip())
                break
        except Exception as e:
            print(f"{url}: {e}", file=sys.stderr, flush=True)
            if time.monotonic() > deadline:
                sys.exit(1)
            time.sleep(1)
with open("/dev/termination-log", "w") as log:
    log.write("\\n".join(bodies))
"""


def test_cluster_ip_service_routes_to_pod(
    cluster: Cluster, namespace: str, kubectl: Kubectl
) -> None:
    image = cluster.need_python_image()
    token = uuid.uuid4().hex
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app": "web"},
            "ports": [{"port": 80, "targetPort": "http"}],
        },
    }
    apply([_http_server_pod(image, token), service], namespace)
    wait_until(
        "pod web Ready",
        lambda: (
            kubectl(
                "get",
                "pod",
                "web",
                "-n",
                namespace,
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            )
            == "True"
        ),
    )
    cluster_ip = kubectl_json("get", "service", "web", "-n", namespace)["spec"]["clusterIP"]
    # By ClusterIP, then by name through cluster DNS (short name via the search path, and FQDN).
    urls = [f"http://{cluster_ip}/", "http://web/", f"http://web.{namespace}.svc.cluster.local/"]
    apply(pod_manifest("client", image, command=["python3", "-c", FETCH, *urls]), namespace)
    assert pod_result(namespace, "client", timeout=600).split() == [token] * len(urls)


def test_pod_reaches_kubernetes_service_with_its_token(
    cluster: Cluster, namespace: str, kubectl: Kubectl
) -> None:
    """In-cluster clients (the operator) reach the API server through the kubernetes Service."""
    image = cluster.need_python_image()
    script = """
import json, os, ssl, sys, time, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
ctx = ssl.create_default_context(cafile=f"{sa}/ca.crt")
req = urllib.request.Request(f"https://{host}:{port}/version")
req.add_header("Authorization", "Bearer " + open(f"{sa}/token").read())
deadline = time.monotonic() + 180
while True:
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            version = json.load(r)["gitVersion"]
            break
    except Exception as e:
        print(f"/version: {e}", file=sys.stderr, flush=True)
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(1)
with open("/dev/termination-log", "w") as log:
    json.dump({"host": host, "gitVersion": version}, log)
"""
    pod = pod_manifest("incluster", image, command=["python3", "-c", script])
    pod["spec"]["automountServiceAccountToken"] = True
    apply(pod, namespace)
    result = json.loads(pod_result(namespace, "incluster", timeout=400))
    kubernetes_ip = kubectl_json("get", "service", "kubernetes", "-n", "default")["spec"][
        "clusterIP"
    ]
    assert result["host"] == kubernetes_ip
    server = json.loads(kubectl("get", "--raw", "/version"))
    assert result["gitVersion"] == server["gitVersion"]


class _TokenHandler(http.server.BaseHTTPRequestHandler):
    token = ""
    clients: list[str] = []

    def do_GET(self) -> None:
        body = self.token.encode()
        self.clients.append(self.client_address[0])
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def host_server(cluster: Cluster) -> Iterator[tuple[str, int, type[_TokenHandler]]]:
    """An HTTP server on this machine, listening where pods can reach it."""
    host_ip = cluster.need_host_ip()
    handler = type("Handler", (_TokenHandler,), {"token": uuid.uuid4().hex, "clients": []})
    with socketserver.ThreadingTCPServer((host_ip, 0), handler) as server:
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield host_ip, server.server_address[1], handler
        finally:
            server.shutdown()
            thread.join()


def test_pod_reaches_server_on_host(
    cluster: Cluster,
    namespace: str,
    kubectl: Kubectl,
    host_server: tuple[str, int, type[_TokenHandler]],
) -> None:
    image = cluster.need_python_image()
    host_ip, port, handler = host_server
    apply(
        pod_manifest(
            "client", image, command=["python3", "-c", FETCH, f"http://{host_ip}:{port}/"]
        ),
        namespace,
    )
    assert pod_result(namespace, "client", timeout=400).strip() == handler.token
    pod = kubectl_json("get", "pod", "client", "-n", namespace)
    assert handler.clients, "the server on the host saw no request"
    if cluster.local:
        # Pod to host on the bridge is not masqueraded: the server sees the pod's own address.
        assert pod["status"]["podIP"] in handler.clients


def test_restricted_namespace_rejects_privileged_pod(cluster: Cluster, namespace: str) -> None:
    """The per-test namespace really enforces Pod Security "restricted"."""
    image = cluster.need_python_image()
    pod = pod_manifest("bad", image, command=["true"])
    pod["spec"]["securityContext"] = {**RESTRICTED_POD_SECURITY, "runAsNonRoot": False}
    pod["spec"]["containers"][0]["securityContext"] = {
        **RESTRICTED_CONTAINER_SECURITY,
        "allowPrivilegeEscalation": True,
    }
    with pytest.raises(KubectlError, match="violates PodSecurity"):
        apply(pod, namespace)
