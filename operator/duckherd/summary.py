"""The stage summary: the JSON a stage pod writes to its termination message.

This is the contract between the jobs (which write it) and the operator (which reads it into
status). Kubernetes keeps at most 4096 bytes of a termination message, so `encode` drops the
least important detail first and marks the result `truncated` rather than cutting JSON apart.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from duckherd.validation import describe_validation_errors

MAX_BYTES = 4096
SUMMARY_VERSION = 1


class TableSummary(BaseModel):
    model_config = ConfigDict(extra="ignore")

    rows: int = Field(description="Rows in the table after the stage.")
    loaded: int | None = Field(default=None, description="Rows this stage wrote.")
    loadedAt: str | None = None


class CheckResult(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    severity: Literal["warn", "error"]
    success: bool
    observed: str | None = None


class ChecksSummary(BaseModel):
    model_config = ConfigDict(extra="ignore")

    passed: int = 0
    failed: int = 0
    warned: int = 0
    results: list[CheckResult] = Field(default_factory=list)


class PublishedTarget(BaseModel):
    model_config = ConfigDict(extra="ignore")

    table: str
    target: str
    rows: int


class KpiResult(BaseModel):
    """One business KPI (`spec.metrics[]`) as the check stage computed it."""

    model_config = ConfigDict(extra="ignore")

    name: str
    table: str = Field(description="`schema.table`.")
    value: float | None = Field(default=None, description="None: NULL, or see error.")
    error: str | None = Field(default=None, description="Why it could not be computed.")


class StageResources(BaseModel):
    """What the stage's process used, measured by the stage itself (`getrusage`)."""

    model_config = ConfigDict(extra="ignore")

    peakMemoryBytes: int = Field(
        ge=0, description="Peak resident memory of the process and the children it waited for."
    )
    cpuSeconds: float = Field(ge=0, description="User and system CPU time the stage used.")


class WarehouseUsage(BaseModel):
    """The warehouse file and its volume after the stage, measured by the stage (`statvfs`)."""

    model_config = ConfigDict(extra="ignore")

    sizeBytes: int = Field(ge=0, description="The DuckDB file and its write-ahead log.")
    capacityBytes: int = Field(ge=0, description="Capacity of the filesystem holding it.")
    availableBytes: int = Field(ge=0, description="Bytes still available to the stage there.")


class ModelRun(BaseModel):
    """A relation the transform's dbt build built (or failed to), and what it reads."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(description="dbt node name.")
    relation: str = Field(description="`schema.name` in the warehouse.")
    status: str = Field(description="dbt's status of the node.")
    inputs: list[str] = Field(
        default_factory=list, description="`schema.name` of each model and source it reads."
    )
    startedAt: str | None = None
    finishedAt: str | None = None


class LineageDelivery(BaseModel):
    """How the stage's OpenLineage events went (absent while lineage is off)."""

    model_config = ConfigDict(extra="ignore")

    sent: int = Field(default=0, ge=0, description="Events the receiver accepted.")
    error: str | None = Field(
        default=None,
        description=(
            "Why delivery stopped (an error, a refusal, no answer in time): lineage is then off "
            "for the rest of the stage, which itself is not affected. Redacted, one line."
        ),
    )


class StageSummary(BaseModel):
    """What one stage did. `ok` is the single truth about success."""

    model_config = ConfigDict(extra="ignore")

    v: int = SUMMARY_VERSION
    stage: Literal["ingest", "transform", "check", "publish"]
    runId: str | None = None
    ok: bool
    startedAt: str | None = None
    finishedAt: str | None = None
    durationSeconds: float | None = None
    tables: dict[str, TableSummary] = Field(default_factory=dict)
    models: dict[str, str] = Field(default_factory=dict, description="dbt model -> status")
    checks: ChecksSummary | None = None
    kpis: list[KpiResult] = Field(default_factory=list, description="check: business KPIs")
    published: list[PublishedTarget] = Field(default_factory=list)
    blocked: bool = Field(default=False, description="publish held back by failed checks")
    pruned: dict[str, int] = Field(
        default_factory=dict, description="rows pruned per table by retention (ingest)"
    )
    lineage: list[ModelRun] = Field(
        default_factory=list,
        description=(
            "transform: dbt's model graph of this build (lineage events read it); kept in "
            "_duckherd.runs, never in the termination message"
        ),
    )
    error: str | None = None
    resources: StageResources | None = None
    warehouse: WarehouseUsage | None = None
    lineageEvents: LineageDelivery | None = None
    truncated: bool = False


def _dump(summary: StageSummary) -> bytes:
    data = summary.model_dump(mode="json", exclude_defaults=True, exclude={"lineage"})
    data["stage"], data["ok"] = summary.stage, summary.ok
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _shorten_kpi_errors(summary: StageSummary) -> None:
    for kpi in summary.kpis:
        kpi.error = kpi.error[:100] if kpi.error else kpi.error


def encode(summary: StageSummary, limit: int = MAX_BYTES) -> bytes:
    """Serialize within `limit` bytes, shedding detail in order of least value."""
    encoded = _dump(summary)
    if len(encoded) <= limit:
        return encoded
    slim = summary.model_copy(deep=True)
    slim.truncated = True
    shedders: list[Any] = [
        lambda s: (
            setattr(s.checks, "results", [r for r in s.checks.results if not r.success])
            if s.checks
            else None
        ),
        lambda s: setattr(s, "models", {}),
        lambda s: setattr(s.checks, "results", []) if s.checks else None,
        lambda s: setattr(s, "published", []),
        lambda s: setattr(s, "tables", dict(sorted(s.tables.items())[:20])),
        lambda s: setattr(s, "tables", {}),
        _shorten_kpi_errors,
        lambda s: setattr(s, "kpis", []),
    ]
    for shed in shedders:
        shed(slim)
        encoded = _dump(slim)
        if len(encoded) <= limit:
            return encoded
    if slim.error:
        marker = "… [truncated]"
        overflow = len(encoded) - limit + len(marker.encode()) + 8
        raw = slim.error.encode()[: max(0, len(slim.error.encode()) - overflow)]
        slim.error = raw.decode(errors="ignore") + marker
        encoded = _dump(slim)
    return encoded[:limit] if len(encoded) > limit else encoded


class SummaryError(ValueError):
    """A termination message that is not a valid stage summary."""


def decode(message: str | bytes | None, stage: str | None = None) -> StageSummary:
    """Parse a termination message; raise SummaryError naming what is wrong."""
    if (
        message is None
        or not str(
            message if isinstance(message, str) else message.decode(errors="replace")
        ).strip()
    ):
        raise SummaryError("empty termination message")
    if isinstance(message, bytes):
        message = message.decode(errors="replace")
    if len(message.encode()) > MAX_BYTES:
        raise SummaryError(f"termination message larger than {MAX_BYTES} bytes")
    # With FallbackToLogsOnError the message may be log lines: the summary is the last JSON line.
    last_line = message.strip().splitlines()[-1]
    try:
        data = json.loads(last_line)
    except json.JSONDecodeError as error:
        raise SummaryError(f"termination message is not JSON: {last_line[:200]!r}") from error
    if not isinstance(data, dict):
        raise SummaryError("termination message is not a JSON object")
    try:
        summary = StageSummary.model_validate(data)
    except ValidationError as error:
        details = describe_validation_errors(error.errors())
        raise SummaryError(f"termination message is not a stage summary: {details}") from error
    if stage is not None and summary.stage != stage:
        raise SummaryError(f"summary is for stage {summary.stage!r}, expected {stage!r}")
    return summary


# --------------------------------------------------------------------------- backup / restore


class BackupRecord(BaseModel):
    """One backup, as its `backup.json` at the destination describes it."""

    model_config = ConfigDict(extra="ignore")

    id: str
    time: str
    sizeBytes: int
    runId: str | None = None
    location: str
    sha256: str | None = None
    duckdb: str | None = Field(default=None, description="DuckDB version that wrote the file")


class TaskSummary(BaseModel):
    """What a backup or restore Job did (its termination message, like a StageSummary)."""

    model_config = ConfigDict(extra="ignore")

    v: int = SUMMARY_VERSION
    task: Literal["backup", "restore"]
    ok: bool
    startedAt: str | None = None
    finishedAt: str | None = None
    backup: BackupRecord | None = Field(default=None, description="the backup made or restored")
    backups: list[BackupRecord] = Field(
        default_factory=list, description="the backups at the destination, newest first"
    )
    pruned: list[str] = Field(default_factory=list, description="backups deleted beyond keep")
    error: str | None = None
    truncated: bool = False


def _dump_task(summary: TaskSummary) -> bytes:
    data = summary.model_dump(mode="json", exclude_defaults=True)
    data["task"], data["ok"] = summary.task, summary.ok
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def encode_task(summary: TaskSummary, limit: int = MAX_BYTES) -> bytes:
    """Serialize within `limit` bytes: the oldest listed backups go first, then the error's end."""
    slim = summary.model_copy(deep=True)
    encoded = _dump_task(slim)
    while len(encoded) > limit and (slim.backups or slim.pruned):
        slim.truncated = True
        if slim.pruned:
            slim.pruned.pop()
        else:
            slim.backups.pop()
        encoded = _dump_task(slim)
    if len(encoded) > limit and slim.error:
        slim.error = slim.error[: max(0, len(slim.error) - (len(encoded) - limit) - 20)] + "…"
        encoded = _dump_task(slim)
    return encoded[:limit]


def decode_task(message: str | bytes | None, task: str | None = None) -> TaskSummary:
    """Parse a backup or restore Job's termination message; SummaryError says what is wrong."""
    if isinstance(message, bytes):
        message = message.decode(errors="replace")
    if message is None or not message.strip():
        raise SummaryError("empty termination message")
    last_line = message.strip().splitlines()[-1]
    try:
        summary = TaskSummary.model_validate_json(last_line)
    except ValidationError as error:
        details = describe_validation_errors(error.errors())
        message = f"termination message is not a {task or 'task'} summary: {details}"
        raise SummaryError(message) from error
    if task is not None and summary.task != task:
        raise SummaryError(f"summary is for {summary.task!r}, expected {task!r}")
    return summary
