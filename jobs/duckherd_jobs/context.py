"""What every stage receives: the parsed pipeline, the warehouse path and the run id."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from duckherd.api import DataPipeline


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_run_id() -> str:
    """Run ids sort by time and are unique: `YYYYmmddTHHMMSS-xxxxxx` (also a valid label)."""
    return f"{utc_now():%Y%m%dt%H%M%S}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class StageContext:
    """Inputs of one stage invocation."""

    pipeline: DataPipeline
    warehouse: Path
    run_id: str
    manifest_dir: Path = Path(".")
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    lock_timeout_seconds: float = 600.0

    @property
    def name(self) -> str:
        return self.pipeline.metadata.name

    @property
    def namespace(self) -> str:
        return self.pipeline.metadata.namespace or "default"
