"""Whole-run atomicity for dbt: build on a copy of the warehouse, swap it in on success.

dbt commits model by model, so a run whose third model fails would keep the two models built
before it. Instead the transform stage, holding the warehouse's lock for the whole stage:

1. checkpoints the warehouse (everything in the main file, no WAL) and copies the file to
   `<warehouse>.build-<run id>` beside it, in a child process (`cp --reflink=auto`: closing
   the file in this process would drop DuckDB's POSIX lock that `held` keeps);
2. lets dbt build on the copy;
3. on success checkpoints and fsyncs the copy and renames it over the warehouse (`rename(2)`
   is atomic on one filesystem: the name points at the old file or the new one, whatever
   happens), then fsyncs the directory; on failure deletes the copy.

So checks and publish, and any reader, see the warehouse of the previous run or of this one,
never half of each. A process killed mid-build leaves the warehouse untouched and a stale
copy, which the next transform deletes before it starts (it holds the lock, so no other
transform can be using it). The cost is one file copy per run and room for a second copy of
the warehouse on its volume while dbt runs (measured in docs/faults.md).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import duckdb

from duckherd_jobs.warehouse import copy_in_child

log = logging.getLogger("duckherd.jobs.transform")

BUILD_INFIX = ".build-"


def build_path(warehouse: Path, run_id: str) -> Path:
    return warehouse.with_name(f"{warehouse.name}{BUILD_INFIX}{run_id}")


def leftover_builds(warehouse: Path) -> list[Path]:
    """Copies (and their WAL files) a killed transform left beside the warehouse."""
    return sorted(warehouse.parent.glob(f"{warehouse.name}{BUILD_INFIX}*"))


def discard_leftover_builds(warehouse: Path) -> None:
    """Call with the warehouse lock held: then no other transform is building."""
    for path in leftover_builds(warehouse):
        log.info("removing %s, left by a transform that did not finish", path.name)
        path.unlink(missing_ok=True)


def start_build(held: duckdb.DuckDBPyConnection, warehouse: Path, run_id: str) -> Path:
    """Copy the warehouse (whose lock `held` holds) for dbt to build on."""
    discard_leftover_builds(warehouse)
    held.execute("CHECKPOINT")  # the whole database in the main file: the copy needs no WAL
    copy = build_path(warehouse, run_id)
    try:
        copy_in_child(warehouse, copy)  # not in this process: it would drop `held`'s lock
    except BaseException:
        discard_build(copy)
        raise
    return copy


def discard_build(copy: Path) -> None:
    copy.unlink(missing_ok=True)
    copy.with_name(copy.name + ".wal").unlink(missing_ok=True)


def swap_in(copy: Path, warehouse: Path) -> None:
    """Make the built copy (closed) the warehouse, durably and atomically."""
    if copy.with_name(copy.name + ".wal").exists():  # the WAL would not follow the rename
        with duckdb.connect(str(copy)) as connection:
            connection.execute("CHECKPOINT")
    _fsync(copy)
    os.replace(copy, warehouse)
    _fsync(warehouse.parent)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
