"""Where a running operator's memory goes at fleet size, on the local cluster (docs/fleet.md).

    python -m benchmarks.profile_operator_memory            # N = 1000
    PROFILE_FLEET_SIZE=300 python -m benchmarks.profile_operator_memory

Runs `duckherd operator` (`duckherd_operator.main.run`) in a child process against the local
cluster (hack/cluster; `cluster.sh up` first), serving one fresh namespace, and creates N
pipelines of P1's shape there while it runs (as P1 does; their sources point nowhere and no
run is due). Once every pipeline has status and the operator's CPU time has stopped growing,
the child reports (SIGUSR1) its VmRSS and VmHWM, the deep size of each structure it keeps
(Kopf's indexes, then the validation cache, the applied-children notes, the locks, Kopf's
per-object memories: an object reached from an earlier structure is not counted again), and
CPython's allocator statistics: bytes in use against free bytes held in its arenas, which is
what fragmentation costs. Then it stops that operator and starts another on the same fleet
(a restart: it lists every object and resumes every pipeline at once) and reports the same
once that one has resumed them all, ended a resync round and come to rest.
`benchmarks/profile_fleet_memory.py` asks the same without a cluster, part by part; this one
measures the process as it runs.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
import types
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

SIZE = int(os.environ.get("PROFILE_FLEET_SIZE", "1000"))
MIB = 2**20
LIVENESS_PORT, METRICS_PORT = 18080, 19090
_NOT_DATA = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType, types.CodeType)


# ------------------------------------------------------------------ in the operator's process


def _proc_status() -> str:
    with open("/proc/self/status") as status:
        lines = [line.split() for line in status if line.startswith(("VmRSS", "VmHWM"))]
    return ", ".join(f"{fields[0]} {int(fields[1]) / 1024:.0f} MiB" for fields in lines)


def deep_size(root: object, seen: set[int]) -> tuple[int, int]:
    """Bytes and objects reachable from `root` (gc referents), skipping those in `seen`."""
    size = count = 0
    stack = [root]
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, _NOT_DATA):
            continue
        seen.add(id(item))
        size, count = size + sys.getsizeof(item), count + 1
        stack.extend(gc.get_referents(item))
    return size, count


def _structures() -> Iterator[tuple[str, object]]:
    from kopf._core.engines.indexing import OperatorIndexers
    from kopf._core.reactor.inventory import ResourceMemories

    from duckherd_operator import actions, validation
    from duckherd_operator.applied import APPLIED

    memories: list[object] = []
    for found in gc.get_objects():
        if isinstance(found, OperatorIndexers):
            yield from ((f"Kopf index {name}", indexer) for name, indexer in found.items())
        elif isinstance(found, ResourceMemories):
            memories.append(found)
    yield "validation cache", validation._parsed
    yield "applied-children notes", APPLIED
    yield "per-pipeline locks", actions._locks
    yield from (("Kopf per-object memories (and the memo)", memory) for memory in memories)


def _allocator_lines() -> list[str]:
    """CPython's arena statistics (sys._debugmallocstats writes them to fd 2)."""
    read, write = os.pipe()
    saved = os.dup(2)
    os.dup2(write, 2)
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(write)
        os.close(saved)
    with os.fdopen(read) as text:
        keep = ("# arenas allocated current", "# bytes in allocated", "# bytes in available")
        return [line.strip() for line in text if line.startswith(keep)]


def report(path: Path) -> None:
    gc.collect()
    lines = [_proc_status(), *_allocator_lines()]  # first: the walk below allocates
    seen: set[int] = set()
    for name, structure in _structures():
        size, count = deep_size(structure, seen)
        lines.append(f"{size / MIB:8.2f} MiB {count:>9} objects  {name}")
    written = path.with_suffix(".part")
    written.write_text("\n".join(lines) + "\n")
    written.rename(path)  # whole, or not there


def run_operator(namespace: str, report_path: str) -> None:
    from duckherd_operator.lean_imports import use_lean_kubernetes_client

    use_lean_kubernetes_client()  # as `duckherd operator` does
    from duckherd_operator.main import run

    signal.signal(signal.SIGUSR1, lambda *_: report(Path(report_path)))
    run(
        namespaces=[namespace],
        liveness=f"http://127.0.0.1:{LIVENESS_PORT}/healthz",
        metrics_port=METRICS_PORT,
    )


# ------------------------------------------------------------------ the driver


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _live() -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{LIVENESS_PORT}/healthz", timeout=2):
            return True
    except OSError:
        return False


def _settled(pid: int, quiet_seconds: float = 20) -> bool:
    before = _cpu_seconds(pid)
    time.sleep(quiet_seconds)
    return _cpu_seconds(pid) - before < 0.05 * quiet_seconds


def _metric_sum(name: str) -> float:
    """The sum of every sample of metric `name` the operator serves."""
    url = f"http://127.0.0.1:{METRICS_PORT}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    from prometheus_client.parser import text_string_to_metric_families

    families = text_string_to_metric_families(text)
    return sum(s.value for f in families for s in f.samples if s.name == name)


def _report_at_rest(
    namespace: str, report_path: Path, create: bool, wait_for: tuple[str, Callable[[], bool]]
) -> str:
    """Start the operator; create the fleet under it if `create`; once `wait_for` holds and
    its CPU time has stopped growing, return its report."""
    from tests.e2e.conftest import wait_until

    from benchmarks.bench_fleet import apply_all, fleet_pipelines

    report_path.unlink(missing_ok=True)
    command = [sys.executable, "-m", "benchmarks.profile_operator_memory", namespace]
    with subprocess.Popen(
        [*command, str(report_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as operator:
        try:
            wait_until("the operator is live", _live, timeout=300)
            if create:
                apply_all(fleet_pipelines(SIZE, "http://127.0.0.1:9"), namespace)
            wait_until(*wait_for, timeout=900, interval=2)
            wait_until("the operator at rest", lambda: _settled(operator.pid), timeout=900)
            operator.send_signal(signal.SIGUSR1)
            wait_until("the report", report_path.exists, timeout=120)
            return report_path.read_text()
        finally:
            operator.terminate()


def profile(namespace: str, report_path: Path) -> tuple[str, str]:
    """The report of an operator at rest after creating the fleet, then of its successor at
    rest after resuming that fleet (a restart: it lists every object and resumes all)."""
    from benchmarks.bench_fleet import no_pipelines_left, observed_count

    no_pipelines_left()  # an earlier run's fleet, still being deleted, would load the API server
    created = _report_at_rest(
        namespace,
        report_path,
        create=True,
        wait_for=(f"{SIZE} pipelines with status", lambda: observed_count(namespace) >= SIZE),
    )
    resumed = _report_at_rest(
        namespace,
        report_path,
        create=False,
        wait_for=(
            f"{SIZE} pipelines resumed and a resync round",
            lambda: (
                _metric_sum("controller_runtime_reconcile_total") >= SIZE
                and _metric_sum("duckherd_resync_rounds_total") >= 1
            ),
        ),
    )
    return created, resumed


def main() -> None:
    from tests.e2e.conftest import export_env, local_cluster_env, restore_env
    from tests.e2e.operator_support import delete_namespace

    from benchmarks.bench_fleet import fresh_namespace

    saved = export_env(local_cluster_env())
    namespace = fresh_namespace("memory")
    report_path = Path(f"/tmp/{namespace}.txt")
    try:
        created, resumed = profile(namespace, report_path)
        print(f"N = {SIZE}, after creating them under a running operator, at rest:\n{created}")
        print(f"N = {SIZE}, its successor after resuming them all, at rest:\n{resumed}")
    finally:
        delete_namespace(namespace)
        report_path.unlink(missing_ok=True)
        restore_env(saved)


if __name__ == "__main__":
    if len(sys.argv) == 3:
        run_operator(sys.argv[1], sys.argv[2])
    else:
        main()
