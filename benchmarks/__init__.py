"""Benchmarks: Duckherd side by side with the tools a user would pick instead.

Each `bench_<name>.py` module has a `main()` that prints one table. Every contender runs in a
fresh child process so that its peak RSS (from `wait4`) is its own, and reports the seconds
its work took (imports and interpreter start-up excluded, for every contender alike).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Measurement:
    name: str
    seconds: float
    rows: int
    peak_rss_mb: float


def run_contender(name: str, module: str, arguments: Sequence[str]) -> Measurement:
    """Run `python -m <module> <arguments>` in a child; it prints {"seconds", "rows"} last."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, *arguments],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"contender {name} failed (exit {process.returncode}): {output[-2000:]}")
    result = json.loads(output.strip().splitlines()[-1])
    # ru_maxrss is in KiB on Linux.
    return Measurement(name, float(result["seconds"]), int(result["rows"]), usage.ru_maxrss / 1024)


def report(result: dict[str, float | int]) -> None:
    """What a contender child prints as its last line."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def print_table(title: str, measurements: Sequence[Measurement], reference: str) -> None:
    """One table: each contender's time as a ratio to the reference (Duckherd), and peak RSS.

    `speed vs ref` above 1 means the reference (Duckherd) is that many times faster.
    """
    ref = next(m for m in measurements if m.name == reference)
    header = f"{'contender':<34} {'seconds':>9} {'rows':>10} {'rows/s':>11} {'ref faster by':>14}"
    print(f"\n{title}")
    print(header + f" {'peak RSS MB':>12}")
    print("-" * (len(header) + 13))
    for m in measurements:
        rate = m.rows / m.seconds if m.seconds else 0.0
        ratio = m.seconds / ref.seconds if ref.seconds else float("nan")
        print(
            f"{m.name:<34} {m.seconds:>9.2f} {m.rows:>10} {rate:>11,.0f} {ratio:>13.2f}x "
            f"{m.peak_rss_mb:>12.0f}"
        )
