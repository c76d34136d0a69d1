"""Faults injected on the node of the local cluster (hack/cluster), for real.

The local cluster's node is this machine, and the tests run as root on it: a stage pod's
process can be SIGKILLed from the host (as the kernel's OOM killer or a node agent would: the
pod sees exit 137, not a graceful stop), a file can be dropped into a pod's emptyDir while the
API server is down, a warehouse volume can be read as the file it is, and the cluster's
components can be stopped and started with hack/cluster/cluster.sh.

The stage processes stop at the pause points of `duckherd_jobs.fault_points`
(DUCKHERD_TEST_PAUSE_AT / DUCKHERD_TEST_PAUSE_DIR, passed through the pipeline's
`spec.pod.env`; the pause directory is the pod's /tmp, an emptyDir every stage pod has).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from duckherd.contract import WAREHOUSE_FILE
from duckherd_jobs.fault_points import ENV_PAUSE_AT, ENV_PAUSE_DIR, ENV_PAUSE_SECONDS
from tests.e2e.conftest import CLUSTER_SH, Cluster, kubectl, kubectl_json, wait_until

STATE = Path(os.environ.get("DUCKHERD_CLUSTER_STATE", "/var/lib/duckherd-cluster"))
CONTAINERD_SOCKET = STATE / "containerd" / "containerd.sock"
PAUSE_DIR = "/tmp"  # the stage pod's emptyDir (operator builders: volume `tmp`)
# A stage pod imports duckdb, dbt and GX before it reaches a point: generous on a loaded machine.
PAUSE_TIMEOUT = 480.0


def need_local_node(cluster: Cluster) -> None:
    """These faults act on the node itself: only the local cluster's node is this machine."""
    if cluster.local and os.geteuid() == 0:
        return
    why = "node faults need the local cluster (hack/cluster) and root on its node"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(why)
    pytest.skip(why)


def pause_env(point: str, seconds: int = 900) -> list[dict[str, str]]:
    """`spec.pod.env` that stops a stage process at `point` (duckherd_jobs.fault_points)."""
    return [
        {"name": ENV_PAUSE_AT, "value": point},
        {"name": ENV_PAUSE_DIR, "value": PAUSE_DIR},
        {"name": ENV_PAUSE_SECONDS, "value": str(seconds)},
    ]


def cluster_sh(*args: str, timeout: float = 900) -> None:
    """hack/cluster/cluster.sh with its output kept; its tail in the error if it fails."""
    proc = subprocess.run(
        [str(CLUSTER_SH), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    print(f"[e2e] hack/cluster/cluster.sh {' '.join(args)}: exit {proc.returncode}", flush=True)
    if proc.returncode != 0:
        raise AssertionError(
            f"hack/cluster/cluster.sh {' '.join(args)} exited {proc.returncode}\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )


# ------------------------------------------------------------------------- stage pods


def newest_pod(namespace: str, job: str) -> dict[str, Any] | None:
    pods: list[dict[str, Any]] = kubectl_json(
        "get", "pods", "-n", namespace, "-l", f"job-name={job}"
    )["items"]
    pods.sort(key=lambda pod: pod["metadata"]["creationTimestamp"])
    return pods[-1] if pods else None


def pod_ended(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def wait_paused(namespace: str, job: str, point: str) -> tuple[dict[str, Any], int]:
    """The Job's newest pod once its stage process waits at `point`, and that process's pid
    (in the pod), read with `kubectl exec` from the marker the process wrote."""

    def paused() -> tuple[dict[str, Any], int] | None:
        pod = newest_pod(namespace, job)
        if pod is None:
            return None
        if pod_ended(pod):
            name = pod["metadata"]["name"]
            logs = kubectl("logs", "-n", namespace, name, check=False)
            raise AssertionError(f"pod {name} ended before reaching {point}:\n{logs[-3000:]}")
        pid = paused_pid(namespace, pod, point)
        return (pod, pid) if pid is not None else None

    found: tuple[dict[str, Any], int] = wait_until(
        f"a pod of Job {job} paused at {point}", paused, timeout=PAUSE_TIMEOUT, interval=1
    )
    return found


def paused_pid(namespace: str, pod: dict[str, Any], point: str) -> int | None:
    """The pid (in the pod) of the stage process waiting at `point`, if it is."""
    name = pod["metadata"]["name"]
    marker = kubectl(
        "exec", "-n", namespace, name, "--", "cat", f"{PAUSE_DIR}/{point}.paused", check=False
    ).strip()
    return int(marker) if marker.isdigit() else None


def release(namespace: str, pod: dict[str, Any], point: str) -> None:
    """Let a paused stage process carry on (through the API server: `kubectl exec`)."""
    name = pod["metadata"]["name"]
    kubectl("exec", "-n", namespace, name, "--", "touch", f"{PAUSE_DIR}/{point}.release")


def release_on_node(pod: dict[str, Any], point: str) -> None:
    """Let a paused stage process carry on without the API server: the release file goes
    straight into the pod's emptyDir on the node."""
    tmp = STATE / "kubelet" / "pods" / pod["metadata"]["uid"] / "volumes"
    release_file = tmp / "kubernetes.io~empty-dir" / "tmp" / f"{point}.release"
    assert release_file.parent.is_dir(), release_file.parent
    release_file.touch()


def container_id(pod: dict[str, Any]) -> str:
    """The containerd id of the pod's (only) container, once the kubelet has reported it.

    The pod at hand may have been read before that: a stage process can start and reach a
    pause point before the kubelet posts the container's status, so the pod is read again
    until its status names the container."""
    namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]

    def reported(current: dict[str, Any]) -> str | None:
        statuses = (current.get("status") or {}).get("containerStatuses") or []
        found = statuses[0].get("containerID") if len(statuses) == 1 else None
        return str(found).removeprefix("containerd://") if found else None

    known = reported(pod)
    if known:
        return known
    found: str = wait_until(
        f"pod {name}'s container id",
        lambda: reported(kubectl_json("get", "pod", name, "-n", namespace)),
        timeout=120,
        interval=1,
    )
    return found


def container_host_pid(pod: dict[str, Any]) -> int:
    """The host pid of the pod's (only) container's main process, as containerd knows it."""
    container = container_id(pod)
    tasks = subprocess.run(
        ["ctr", "-a", str(CONTAINERD_SOCKET), "-n", "k8s.io", "task", "ls"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    for line in tasks.splitlines():
        fields = line.split()
        if fields and fields[0] == container:
            return int(fields[1])
    raise AssertionError(f"containerd runs no task {container}:\n{tasks}")


def namespaced_pid(host_pid: int) -> int:
    """The pid a host process has inside its own pid namespace (the last NSpid field)."""
    for line in Path(f"/proc/{host_pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    raise AssertionError(f"/proc/{host_pid}/status has no NSpid")


def sigkill_stage(pod: dict[str, Any], pid_in_pod: int) -> int:
    """SIGKILL the paused stage process from the node; returns its host pid.

    From the node, not `kubectl exec ... kill -9`: the stage process is the container's
    PID 1, and the kernel ignores SIGKILL sent to a pid namespace's init from inside it. Not
    `kubectl delete pod --force` either: that stops the container with SIGTERM first and
    deletes the pod with its exit status, which is a different fault (a graceful stop). A
    SIGKILL from the node is what the OOM killer does."""
    host_pid = container_host_pid(pod)
    assert namespaced_pid(host_pid) == pid_in_pod, "the paused process is the one killed"
    os.kill(host_pid, signal.SIGKILL)
    wait_until(f"process {host_pid} gone", lambda: process_gone(host_pid), timeout=60)
    return host_pid


def process_gone(host_pid: int) -> bool:
    try:
        stat = Path(f"/proc/{host_pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_terminated(namespace: str, job: str) -> dict[str, Any]:
    """The Job's newest pod once the kubelet reports its container terminated."""

    def terminated() -> dict[str, Any] | None:
        pod = newest_pod(namespace, job)
        for status in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
            if (status.get("state") or {}).get("terminated"):
                return pod
        return None

    pod: dict[str, Any] = wait_until(f"the pod of Job {job} terminated", terminated, timeout=240)
    return pod


# ------------------------------------------------------------------------- the warehouse


def claim_directory(namespace: str, claim: str) -> Path:
    """Where a claim's volume lives on the node (duckherd-provisioner: a hostPath)."""
    pvc = kubectl_json("get", "pvc", claim, "-n", namespace)
    pv = kubectl_json("get", "pv", pvc["spec"]["volumeName"])
    return Path(pv["spec"]["hostPath"]["path"])


def snapshot_warehouse(directory: Path, into: Path) -> Path:
    """A copy of the warehouse file (and its write-ahead log) to open without touching the
    volume: opening it read-write replays the log as the next stage would."""
    into.mkdir(parents=True, exist_ok=True)
    target = into / WAREHOUSE_FILE
    for name in (WAREHOUSE_FILE, WAREHOUSE_FILE + ".wal"):
        target.with_name(name).unlink(missing_ok=True)
        if (directory / name).exists():
            shutil.copyfile(directory / name, target.with_name(name))
    return target


def leftovers(directory: Path) -> list[str]:
    """Build copies and spool directories a killed stage may leave on the volume."""
    return sorted(
        path.name
        for path in directory.iterdir()
        if ".build-" in path.name or path.name.startswith(".duckherd-spool-")
    )


def wait_gone(host_pid: int, timeout: float = PAUSE_TIMEOUT) -> None:
    wait_until(f"process {host_pid} to end", lambda: process_gone(host_pid), timeout=timeout)
