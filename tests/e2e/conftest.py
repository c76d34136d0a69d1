"""End-to-end fixtures: a real Kubernetes cluster.

By default the session brings up the local single-node cluster built from upstream sources
(``hack/cluster/cluster.sh up``, output streamed to the terminal; idempotent, so a running
cluster only gets the freshly built project image). A cluster this session started is stopped
again at the end under CI (``CI=true``) and left running otherwise, for the next run and for
other sessions sharing the machine (``make cluster-down`` stops it);
``DUCKHERD_KEEP_CLUSTER=0/1`` overrides either way. A cluster that was already up is never
stopped.

If ``KUBECONFIG`` is set and points at a reachable cluster, that cluster is used instead and
nothing is started. Then ``DUCKHERD_TEST_IMAGE`` must name the project image as that cluster can
pull it, and ``DUCKHERD_HOST_IP`` the address at which pods reach this machine (tests that need
one of them are skipped without it).

Every test gets its own namespace (Pod Security "restricted" enforced), deleted afterwards; on
failure its pods, their logs and its events are printed first.

The operator modules share module-scoped fixtures (`operator`, `pipeline_namespace`,
`watched_namespace`, `demo_api`, at the end). Their plain helpers live in
tests/e2e/operator_support.py, which imports this module, so the fixtures import it when they
run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from duckherd_jobs.demo_source import DemoSource

if TYPE_CHECKING:
    from tests.e2e.operator_support import Operator

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO / "hack" / "cluster" / "cluster.sh"

# Security context that passes Pod Security "restricted".
RESTRICTED_POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
}


class KubectlError(RuntimeError):
    pass


def _own_timeout(args: Sequence[str]) -> float:
    """Seconds of a `--timeout=<n>s|m` kubectl flag (`delete`, `wait`), else 0."""
    for arg in args:
        found = re.fullmatch(r"--timeout=(\d+)(s|m)", arg)
        if found:
            return int(found.group(1)) * (60 if found.group(2) == "m" else 1)
    return 0


def kubectl(*args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> str:
    """Runs kubectl (from PATH, with KUBECONFIG from the environment); returns stdout.

    The process gets at least a minute beyond kubectl's own `--timeout=`, so a slow `delete` or
    `wait` ends with kubectl's message rather than a subprocess timeout."""
    cmd = ["kubectl", *args]
    timeout = max(timeout, _own_timeout(args) + 60)
    proc = subprocess.run(
        cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise KubectlError(
            f"{' '.join(cmd)} exited {proc.returncode}\nstdout: {proc.stdout}\n"
            f"stderr: {proc.stderr}"
        )
    return proc.stdout


def kubectl_json(*args: str) -> Any:
    return json.loads(kubectl(*args, "-o", "json"))


def apply(manifest: dict[str, Any] | Sequence[dict[str, Any]], namespace: str) -> None:
    """Applies one manifest or a list of them in ``namespace``."""
    items = [manifest] if isinstance(manifest, dict) else list(manifest)
    doc = {"apiVersion": "v1", "kind": "List", "items": items}
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))


def wait_until(
    what: str, predicate: Callable[[], Any], timeout: float = 180, interval: float = 1
) -> Any:
    """Polls ``predicate`` until it returns something truthy; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def wait_pod_phase(
    namespace: str, name: str, phases: Sequence[str] = ("Succeeded",), timeout: float = 180
) -> dict[str, Any]:
    """Waits until the pod reaches one of ``phases``; fails at once on an unexpected end."""

    def check() -> dict[str, Any] | None:
        out = kubectl("get", "pod", name, "-n", namespace, "-o", "json", check=False)
        if not out:
            return None
        pod: dict[str, Any] = json.loads(out)
        phase = pod.get("status", {}).get("phase")
        if phase in phases:
            return pod
        if phase in ("Succeeded", "Failed"):
            logs = kubectl("logs", "-n", namespace, name, "--all-containers", check=False)
            raise AssertionError(
                f"pod {namespace}/{name} ended {phase}, expected {list(phases)}\nlogs:\n{logs}"
            )
        return None

    result: dict[str, Any] = wait_until(f"pod {namespace}/{name} {list(phases)}", check, timeout)
    return result


def pod_result(namespace: str, name: str, timeout: float = 180) -> str:
    """What a Pod's container wrote to /dev/termination-log, once the Pod Succeeded.

    Test pods report their result there, never through their log: `kubectl logs` returns the
    container's stderr mixed into its stdout, so a retry or warning line would become part of
    what the test asserts on."""
    pod = wait_pod_phase(namespace, name, timeout=timeout)
    (status,) = pod["status"]["containerStatuses"]
    terminated = (status.get("state") or {}).get("terminated") or {}
    return str(terminated.get("message", ""))


def pod_manifest(
    name: str,
    image: str,
    command: list[str] | None = None,
    args: list[str] | None = None,
    *,
    labels: dict[str, str] | None = None,
    volumes: list[dict[str, Any]] | None = None,
    volume_mounts: list[dict[str, Any]] | None = None,
    restart_policy: str = "Never",
    ports: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A Pod that passes Pod Security "restricted"."""
    container: dict[str, Any] = {
        "name": "main",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "securityContext": RESTRICTED_CONTAINER_SECURITY,
    }
    if command is not None:
        container["command"] = command
    if args is not None:
        container["args"] = args
    if volume_mounts:
        container["volumeMounts"] = volume_mounts
    if ports:
        container["ports"] = ports
    spec: dict[str, Any] = {
        "restartPolicy": restart_policy,
        "securityContext": RESTRICTED_POD_SECURITY,
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 5,
        "containers": [container],
    }
    if volumes:
        spec["volumes"] = volumes
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
    }


@dataclass(frozen=True)
class Cluster:
    """The cluster under test."""

    kubeconfig: str
    local: bool  # the hack/cluster one (as opposed to a user's cluster via KUBECONFIG)
    image: str | None  # the project image, as the cluster's nodes can run it
    base_image: str | None  # a small image with python3 (the local base), else the project one
    host_ip: str | None  # where pods reach this machine

    def need_image(self) -> str:
        if not self.image:
            pytest.skip("DUCKHERD_TEST_IMAGE is not set for this cluster")
        return self.image

    def need_python_image(self) -> str:
        return self.base_image or self.need_image()

    def need_host_ip(self) -> str:
        if not self.host_ip:
            pytest.skip("DUCKHERD_HOST_IP (address at which pods reach this machine) is not set")
        return self.host_ip


def _reachable(kubeconfig: str) -> bool:
    if not shutil.which("kubectl"):
        return False
    proc = subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, "--request-timeout=10s", "get", "--raw", "/readyz"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return proc.returncode == 0


def _parse_env(text: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"export (\w+)=(.*)$", line.strip())
        if m:
            env[m.group(1)] = m.group(2)
    return env


def _cluster_sh(pytestconfig: pytest.Config, *args: str) -> None:
    """Runs hack/cluster/cluster.sh with its output going straight to the terminal/CI log."""
    capman = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        print(f"\n[e2e] hack/cluster/cluster.sh {' '.join(args)}", flush=True)
        proc = subprocess.run([str(CLUSTER_SH), *args], check=False)
    if proc.returncode != 0:
        pytest.fail(f"hack/cluster/cluster.sh {' '.join(args)} failed ({proc.returncode})")


def local_cluster_env() -> dict[str, str]:
    """What `hack/cluster/cluster.sh env` exports: KUBECONFIG, PATH, the images, the host IP."""
    out = subprocess.run([str(CLUSTER_SH), "env"], capture_output=True, text=True, check=True)
    return _parse_env(out.stdout)


def export_env(env: dict[str, str]) -> dict[str, str | None]:
    """Puts `env` into os.environ (PATH's `$PATH` expanded); returns what it replaced."""
    saved = {k: os.environ.get(k) for k in [*env, "PATH"]}
    for key, value in env.items():
        if key == "PATH":
            os.environ["PATH"] = value.replace("$PATH", saved["PATH"] or "")
        else:
            os.environ[key] = value
    return saved


def restore_env(saved: dict[str, str | None]) -> None:
    """Undoes export_env."""
    for key, old in saved.items():
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def local_cluster(env: dict[str, str]) -> Cluster:
    """The hack/cluster cluster, as its `env` describes it."""
    return Cluster(
        kubeconfig=env["KUBECONFIG"],
        local=True,
        image=env["DUCKHERD_TEST_IMAGE"],
        base_image=env.get("DUCKHERD_BASE_IMAGE"),
        host_ip=env["DUCKHERD_HOST_IP"],
    )


def _local_is_up() -> bool:
    proc = subprocess.run(
        [str(CLUSTER_SH), "status"], capture_output=True, text=True, timeout=60, check=False
    )
    return proc.returncode == 0


def _keep_cluster() -> bool:
    keep = os.environ.get("DUCKHERD_KEEP_CLUSTER", "")
    if keep:
        return keep not in ("0", "false", "no")
    return os.environ.get("CI", "").lower() not in ("1", "true", "yes")


@pytest.fixture(scope="session")
def cluster(pytestconfig: pytest.Config) -> Iterator[Cluster]:
    """A reachable Kubernetes cluster; KUBECONFIG and PATH are set in os.environ for kubectl."""
    user_kubeconfig = os.environ.get("KUBECONFIG")
    # After `eval "$(hack/cluster/cluster.sh env)"` KUBECONFIG names the local cluster: still
    # run `up` then, so the project image is rebuilt from the current code.
    local_kubeconfig = Path(
        os.environ.get("DUCKHERD_CLUSTER_STATE", "/var/lib/duckherd-cluster"), "admin.kubeconfig"
    )
    if (
        user_kubeconfig
        and Path(user_kubeconfig).resolve() != local_kubeconfig.resolve()
        and _reachable(user_kubeconfig)
    ):
        yield Cluster(
            kubeconfig=user_kubeconfig,
            local=False,
            image=os.environ.get("DUCKHERD_TEST_IMAGE"),
            base_image=os.environ.get("DUCKHERD_BASE_IMAGE"),
            host_ip=os.environ.get("DUCKHERD_HOST_IP"),
        )
        return
    if os.geteuid() != 0:
        pytest.skip("the local e2e cluster needs root (or set KUBECONFIG to a reachable cluster)")
    was_up = _local_is_up()
    _cluster_sh(pytestconfig, "up")
    env = local_cluster_env()
    saved = export_env(env)
    try:
        yield local_cluster(env)
    finally:
        restore_env(saved)
        if not was_up and not _keep_cluster():
            _cluster_sh(pytestconfig, "down")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"_e2e_rep_{report.when}", report)
    return report


def _dump_namespace(ns: str) -> str:
    parts = [f"===== namespace {ns} (test failed) ====="]
    parts.append(kubectl("get", "all,pvc,events", "-n", ns, "-o", "wide", check=False))
    try:
        pods = kubectl_json("get", "pods", "-n", ns)["items"]
    except (KubectlError, ValueError):
        pods = []
    for pod in pods:
        name = pod["metadata"]["name"]
        parts.append(f"----- pod {name}: {json.dumps(pod.get('status', {}), indent=1)[:3000]}")
        parts.append(kubectl("logs", "-n", ns, name, "--all-containers", check=False))
    return "\n".join(parts)


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, Pod Security "restricted" enforced; deleted afterwards."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    ns = f"e2e-{base}-{uuid.uuid4().hex[:6]}"
    from tests.e2e.operator_support import ensure_restricted_namespace

    ensure_restricted_namespace(ns)
    yield ns
    rep = getattr(request.node, "_e2e_rep_call", None)
    if rep is not None and rep.failed:
        print(_dump_namespace(ns))
    kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture(name="kubectl")
def kubectl_fixture(cluster: Cluster) -> Callable[..., str]:
    """``kubectl(*args, input=None, check=True)`` against the cluster under test."""
    return kubectl


def _module_prefix(request: pytest.FixtureRequest) -> str:
    """`e2e-backup` for test_operator_backup.py, `e2e-gitops-status` for test_gitops_status.py."""
    module = request.module.__name__.rpartition(".")[2]
    return "e2e-" + re.sub(r"^test_(operator_)?", "", module).replace("_", "-")


@pytest.fixture(scope="module")
def operator(cluster: Cluster) -> Iterator[Operator]:
    """The chart installed with its defaults for the module's tests, uninstalled after them. A
    module that needs other values defines its own `operator` with `installed_operator`."""
    from tests.e2e.operator_support import installed_operator

    with installed_operator(cluster) as installed:
        yield installed


@pytest.fixture(scope="module")
def pipeline_namespace(operator: Operator, request: pytest.FixtureRequest) -> Iterator[str]:
    """The module's namespace for its pipelines (`e2e-<module>-<hex>`, "restricted"): set up
    after (torn down before) the operator, which releases their finalizers."""
    from tests.e2e.operator_support import restricted_namespace

    with restricted_namespace(_module_prefix(request), empty_first=True) as name:
        yield name


@pytest.fixture(scope="module")
def watched_namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """The module's namespace for an operator that watches only it (`watchNamespaces`): set up
    before (torn down after) that operator."""
    from tests.e2e.operator_support import restricted_namespace

    with restricted_namespace(_module_prefix(request)) as name:
        yield name


@pytest.fixture(scope="module")
def demo_api(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[DemoSource]:
    """The demo API serving the module's `CUSTOMERS` customers, from this process, at the
    address where pods reach this machine (stage pods call it as an external API)."""
    source = DemoSource(request.module.CUSTOMERS, host=cluster.need_host_ip())
    with source:
        yield source
