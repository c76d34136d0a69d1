"""P2: what the per-pipeline metrics cost the operator process, at fleet size.

    python -m benchmarks.bench_metrics                    # N = 300, 1000
    BENCH_METRICS_SIZES=300 python -m benchmarks.bench_metrics

Each N runs in a fresh process (its memory is its own), holding N DataPipeline objects as
the operator's watch cache holds them after runs of the example (spec and a status made by
`compute_status` from four stage summaries: stages with resources, tables, checks with a
failure, a publish, the warehouse, a KPI), each its own dicts as Kopf's index keeps them.

- **baseline**: that process after a garbage collection, before any monitoring: its
  resident memory (VmRSS); the peak is then reset (`/proc/self/clear_refs`).
- **monitoring**: ten finished runs per pipeline recorded into `RunHistory` (runs by result,
  the stage duration histogram), the pipelines attached, and ten scrapes of `/metrics` by curl over
  real HTTP from the operator's metrics server (`metrics_server.py`, as `duckherd operator`
  starts it: the controller and process metrics included).

Reported: resident memory after the scrapes and its peak during them, each minus the
baseline (what monitoring adds, kept and transient), series and bytes per scrape, and the
median seconds per scrape (printed, on a loaded machine: not a goal). Goal: at most 10 MiB
added at N = 1,000.
"""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SIZES = [int(n) for n in os.environ.get("BENCH_METRICS_SIZES", "300,1000").split(",") if n]
RUNS_PER_PIPELINE = 10
SCRAPES = 10
GOAL_MIB = 10.0
MIB = 2**20


def _proc_status(field: str) -> int:
    with open("/proc/self/status") as status:
        found = re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.MULTILINE)
    assert found, field
    return int(found.group(1)) * 1024


def _fleet_bodies(size: int) -> tuple[list[dict[str, Any]], list[Any]]:
    """N pipeline objects (distinct dicts), and the statuses of a run's end (a success, then
    failed checks)."""
    from tests.unit.test_pipeline_metrics import SPEC, _body, _run, _status

    from duckherd.api import DataPipelineStatus

    first = _status(DataPipelineStatus(), _run("r1", 25, checks_fail=False))
    second = _status(first, _run("r2", 26, checks_fail=True))
    template = _body("p", second)
    bodies = []
    for n in range(size):
        body = json.loads(json.dumps(template))
        body["metadata"]["name"] = f"pipeline-{n:05d}"
        body["spec"] = json.loads(json.dumps(SPEC))
        bodies.append(body)
    return bodies, [first, second]


def _scrape_with_curl(url: str, into: Path) -> None:
    """The scraper's memory is not the operator's: curl reads /metrics into a file."""
    subprocess.run(["curl", "-sSf", "--max-time", "300", "-o", str(into), url], check=True)


def _series(path: Path) -> int:
    with path.open("rb") as text:
        return sum(1 for line in text if line.strip() and not line.startswith(b"#"))


def measure(size: int) -> dict[str, Any]:
    """In this process: the baseline, then monitoring (see the module's docstring)."""
    from duckherd.api import DataPipelineStatus
    from duckherd_operator import metrics
    from duckherd_operator.metrics_server import start_metrics_server

    bodies, statuses = _fleet_bodies(size)
    index = {(b["metadata"]["namespace"], b["metadata"]["name"]): [b] for b in bodies}
    gc.collect()
    baseline = _proc_status("VmRSS")
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # resets VmHWM to the current RSS

    for key in index:
        for run in range(RUNS_PER_PIPELINE):
            metrics.HISTORY.record(key, DataPipelineStatus(), statuses[run % len(statuses)])
    metrics.PIPELINES.attach(index)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = start_metrics_server(port, metrics.PIPELINES, address="127.0.0.1")
    seconds: list[float] = []
    sizes: list[int] = []
    scraped = Path(tempfile.mkdtemp(prefix="bench-metrics-")) / "metrics.txt"
    try:
        for _ in range(SCRAPES):
            started = time.perf_counter()
            _scrape_with_curl(f"http://127.0.0.1:{port}/metrics", scraped)
            seconds.append(time.perf_counter() - started)
            sizes.append(scraped.stat().st_size)
    finally:
        server.shutdown()
        server.server_close()
    gc.collect()
    result = {
        "pipelines": size,
        "baseline_rss_mib": round(baseline / MIB, 1),
        "added_rss_mib": round((_proc_status("VmRSS") - baseline) / MIB, 1),
        "added_peak_mib": round((_proc_status("VmHWM") - baseline) / MIB, 1),
        "series_per_scrape": _series(scraped),
        "bytes_per_scrape": statistics.median(sizes),
        "seconds_per_scrape": round(statistics.median(seconds), 3),
    }
    shutil.rmtree(scraped.parent)
    return result


def main() -> None:
    rows = []
    for size in SIZES:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_metrics", "--one", str(size)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    columns = list(rows[0])
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(str(row[c]) for c in columns))
    largest = max(rows, key=lambda r: r["pipelines"])
    verdict = "met" if largest["added_peak_mib"] <= GOAL_MIB else "NOT met"
    print(
        f"goal: monitoring adds <= {GOAL_MIB:.0f} MiB at {largest['pipelines']} pipelines "
        f"(peak): {verdict}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(measure(int(sys.argv[2]))))
    else:
        main()
