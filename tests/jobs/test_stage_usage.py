"""A stage measures what it used and the warehouse it left, and reports both in its summary
(the termination message the operator reads into status and metrics: docs/metrics.md)."""

from __future__ import annotations

import os
import resource
import subprocess
from pathlib import Path

import yaml

from duckherd.summary import decode
from tests.jobs.ingest_support import pipeline, pod_command, query

ROWS = 100_000


def _run_pod_entry_point(
    tmp_path: Path, spec: Path, warehouse: Path
) -> tuple[int, resource.struct_rusage]:
    """`duckherd job ingest` as the pod runs it; the kernel's own account of the process."""
    process = subprocess.Popen(
        pod_command(spec, warehouse, tmp_path / "termination-log", "run-1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage


def test_the_summary_carries_the_stages_resources_and_the_warehouse(tmp_path: Path) -> None:
    data = tmp_path / "events.csv"
    with data.open("w") as out:
        out.write("id,name,amount\n")
        out.writelines(f"{i},customer number {i},{i * 7 % 1000}.25\n" for i in range(ROWS))
    manifest = pipeline({"name": "events", "file": {"path": str(data), "format": "csv"}})
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(yaml.safe_dump(manifest.model_dump(mode="json", exclude_none=True)))
    warehouse = tmp_path / "warehouse.duckdb"

    code, kernel = _run_pod_entry_point(tmp_path, spec, warehouse)

    assert code == 0
    summary = decode((tmp_path / "termination-log").read_bytes(), stage="ingest")
    assert summary.ok and summary.tables["raw.events"].loaded == ROWS
    # The process's own measurement agrees with the kernel's account of the whole process:
    # no more than it (the stage excludes start-up and the final record), most of it.
    assert summary.resources is not None
    process_peak = kernel.ru_maxrss * 1024
    assert process_peak * 0.5 <= summary.resources.peakMemoryBytes <= process_peak
    assert 0 < summary.resources.cpuSeconds <= kernel.ru_utime + kernel.ru_stime
    # The warehouse as the stage left it: the file holding the 100,000 rows, on this volume.
    assert summary.warehouse is not None
    # (The runner then appends the summary to _duckherd.runs: a block or two more, never less.)
    final_size = warehouse.stat().st_size
    assert final_size - 1024 * 1024 <= summary.warehouse.sizeBytes <= final_size
    assert summary.warehouse.sizeBytes > 500_000
    volume = os.statvfs(tmp_path)
    assert summary.warehouse.capacityBytes == volume.f_blocks * volume.f_frsize
    assert 0 < summary.warehouse.availableBytes <= summary.warehouse.capacityBytes
    # The full record in the warehouse says the same.
    stored = query(warehouse, "SELECT summary->>'$.resources.peakMemoryBytes' FROM _duckherd.runs")
    assert stored == [(str(summary.resources.peakMemoryBytes),)]
