"""A full warehouse volume, said in words: how full, and what size to grow it to.

Whatever runs out of room — the ingest spool, a DuckDB write or checkpoint, the transform's
copy of the warehouse — the error ends up in the stage summary as "No space left on device"
somewhere in a longer text. The runner hands that summary's error to `explain_full_volume`,
which puts the volume's state and a size in front of it: the status, the StageFailed Event
and `duckherd run` then say what happened and what to do.

The suggested size leaves room for what a run needs at its peak: the transform holds the
warehouse twice (it builds on a copy), and the data grows. It is the larger of twice the
volume's capacity and four times the warehouse file, rounded up to a power of two in Mi (Gi
from 1 Gi on), the form `spec.storage.size` takes.
"""

from __future__ import annotations

from pathlib import Path

from duckherd.summary import WarehouseUsage
from duckherd_jobs.usage import measure_warehouse

NO_SPACE = "No space left on device"
_MI = 1 << 20


def quantity(size: int) -> str:
    """A Kubernetes quantity for at least `size` bytes: the next power of two in Mi or Gi."""
    mebibytes = max(1, -(-size // _MI))
    power = 1 << (mebibytes - 1).bit_length()
    return f"{power // 1024}Gi" if power >= 1024 else f"{power}Mi"


def suggested_size(usage: WarehouseUsage) -> str:
    return quantity(max(2 * usage.capacityBytes, 4 * usage.sizeBytes))


def explain_full_volume(error: str | None, warehouse: Path) -> str | None:
    """The error with the volume's state and the size to grow it to in front, when the cause
    was a full volume; else None."""
    if not error or NO_SPACE not in error:
        return None
    try:
        usage = measure_warehouse(warehouse)
    except OSError:
        usage = None
    if usage is None:
        return f"the warehouse volume is full: grow spec.storage.size. {error}"
    used = usage.capacityBytes - usage.availableBytes
    return (
        f"the warehouse volume is full ({warehouse.parent}: {quantity_text(used)} used of "
        f"{quantity_text(usage.capacityBytes)}, warehouse {quantity_text(usage.sizeBytes)}): "
        f"grow it to at least {suggested_size(usage)} (spec.storage.size, or the claim named in "
        f"spec.storage.existingClaim); nothing of this stage was kept. {error}"
    )


def quantity_text(size: int) -> str:
    """A size for people: 1.5 MiB, 230 MiB, 2.0 GiB."""
    if size >= 1 << 30:
        return f"{size / (1 << 30):.1f} GiB"
    if size >= _MI:
        return f"{size / _MI:.1f} MiB"
    return f"{size / 1024:.0f} KiB"
