"""What a stage used, measured by the stage itself: its process's CPU time and peak memory
(`getrusage`), and the warehouse file and the volume it lives on (`statvfs`).

The stage pod reports both in its summary (`duckherd.summary.StageResources`,
`WarehouseUsage`); the operator copies them into status and serves them as metrics
(docs/metrics.md). Measuring in the stage needs no access to the kubelet or metrics-server.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass, field
from pathlib import Path

from duckherd.summary import StageResources, WarehouseUsage

# Linux reports ru_maxrss in KiB.
_MAXRSS_UNIT_BYTES = 1024


def _cpu_seconds() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _peak_memory_bytes() -> int:
    """The process's peak resident memory, or a waited-for child's if that was larger. One
    stage runs per pod, so in a pod this is the stage's peak; `duckherd run` runs every stage
    in one process, where it is the peak up to the end of the stage."""
    peaks = (
        resource.getrusage(who).ru_maxrss
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return max(peaks) * _MAXRSS_UNIT_BYTES


@dataclass
class UsageMeter:
    """Started before the stage runs; `resources()` tells what it used since."""

    cpu_at_start: float = field(default_factory=_cpu_seconds)

    def resources(self) -> StageResources:
        cpu = max(0.0, _cpu_seconds() - self.cpu_at_start)
        return StageResources(peakMemoryBytes=_peak_memory_bytes(), cpuSeconds=round(cpu, 3))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def measure_warehouse(path: Path) -> WarehouseUsage | None:
    """The warehouse file (with DuckDB's write-ahead log) and its filesystem; None while the
    file does not exist (a stage that failed before creating it)."""
    if not path.exists():
        return None
    volume = os.statvfs(path.parent)
    return WarehouseUsage(
        sizeBytes=_size(path) + _size(path.with_name(path.name + ".wal")),
        capacityBytes=volume.f_blocks * volume.f_frsize,
        availableBytes=volume.f_bavail * volume.f_frsize,
    )
