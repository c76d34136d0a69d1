"""Per-pipeline metrics (docs/metrics.md): made at scrape time from what the operator holds.

Almost every series is derived, when Prometheus scrapes, from the DataPipelines in the watch
cache (their spec and the status the operator wrote): nothing per pipeline is kept for them,
and a deleted pipeline's series go with it. Only what must accumulate — finished runs by
result, the stage duration histogram, OpenLineage deliveries — lives in `RunHistory`, a few
integers per stage, recorded when the operator writes a run's end into status and dropped
when the pipeline goes.

The series are written as Prometheus text straight from the stored objects, family by
family, in chunks, not through prometheus_client's Metric objects: at 1,000 pipelines (about
80,000 series) those objects — a sample tuple and a label dict per series — made each
scrape's peak about 90 MiB and left 50 MiB resident (benchmarks/bench_metrics.py); chunks
cost their own 64 KiB. Values are formatted by prometheus_client's `floatToGoString`.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo

from croniter import croniter
from prometheus_client.utils import floatToGoString

from duckherd.api import STAGES, DataPipelineStatus, RunStatus, parse_duration
from duckherd.contract import ENV_LINEAGE_URL
from duckherd.status import parse_time

log = logging.getLogger("duckherd.operator.metrics")

PipelineKey = tuple[str, str]  # namespace, name
BASE_LABELS = ("namespace", "pipeline")
STAGE_DURATION_BUCKETS = (5.0, 15.0, 60.0, 300.0, 1800.0)
# prometheus_client's formatting of sample values (Go's: 1e+06, +Inf, NaN).
_format_value: Callable[[float], str] = floatToGoString
_FINISHED_RUNS = ("Succeeded", "Failed", "Blocked")
_FINISHED_STAGES = ("Succeeded", "Failed")


# --------------------------------------------------------------------------- accumulated


@dataclass
class _Durations:
    """One stage's histogram: observations per bucket (not cumulative; the last is +Inf)."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(STAGE_DURATION_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(STAGE_DURATION_BUCKETS, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        bounds = [*(repr(b) for b in STAGE_DURATION_BUCKETS), "+Inf"]
        running, buckets = 0, []
        for bound, count in zip(bounds, self.counts, strict=True):
            running += count
            buckets.append((bound, float(running)))
        return buckets


def _finished_stages(run: RunStatus | None) -> set[tuple[str, str, str]]:
    if run is None:
        return set()
    return {(run.id, s.stage, s.result) for s in run.stages if s.result in _FINISHED_STAGES}


class RunHistory:
    """Finished runs by result and stage durations, per pipeline, as this process saw them.

    `record` is called after a status write with the status before and after it, so a run
    is counted once (a repeated sync finds it recorded; after a restart the stored status
    already holds it). Written from the event loop, read by the scrape thread: a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[PipelineKey, dict[str, int]] = {}
        self._durations: dict[PipelineKey, dict[str, _Durations]] = {}
        # Per stage: OpenLineage events delivered, stage runs whose delivery failed.
        self._lineage: dict[PipelineKey, dict[str, tuple[int, int]]] = {}

    def record(
        self, key: PipelineKey, previous: DataPipelineStatus, current: DataPipelineStatus
    ) -> None:
        run, before = current.lastRun, previous.lastRun
        if run is None:
            return
        seen = _finished_stages(before)
        with self._lock:
            for stage in run.stages:
                if (run.id, stage.stage, stage.result) in seen:
                    continue
                if stage.result not in _FINISHED_STAGES:
                    continue
                if stage.durationSeconds is not None:
                    stages = self._durations.setdefault(key, {})
                    stages.setdefault(stage.stage, _Durations()).observe(stage.durationSeconds)
                if stage.lineageEvents is not None or stage.lineageError:
                    lineage = self._lineage.setdefault(key, {})
                    sent, failed = lineage.get(stage.stage, (0, 0))
                    lineage[stage.stage] = (
                        sent + (stage.lineageEvents or 0),
                        failed + (1 if stage.lineageError else 0),
                    )
            ended = run.result in _FINISHED_RUNS
            if ended and (before is None or (before.id, before.result) != (run.id, run.result)):
                runs = self._runs.setdefault(key, {})
                runs[run.result.lower()] = runs.get(run.result.lower(), 0) + 1

    def forget(self, key: PipelineKey) -> None:
        with self._lock:
            for kept in (self._runs, self._durations, self._lineage):
                kept.pop(key, None)

    def runs(self, key: PipelineKey) -> dict[str, int]:
        with self._lock:
            return dict(self._runs.get(key, {}))

    def durations(self, key: PipelineKey) -> dict[str, tuple[list[tuple[str, float]], float]]:
        with self._lock:
            stages = self._durations.get(key, {})
            return {stage: (d.cumulative(), d.total) for stage, d in stages.items()}

    def lineage(self, key: PipelineKey) -> dict[str, tuple[int, int]]:
        with self._lock:
            return dict(self._lineage.get(key, {}))

    def retain(self, keys: set[PipelineKey]) -> None:
        """Drop what is kept for pipelines not among `keys` (a delete missed by the watch)."""
        with self._lock:
            for kept in (self._runs, self._durations, self._lineage):
                for key in set(kept) - keys:
                    del kept[key]


# --------------------------------------------------------------------------- schedules


class ScheduleClock:
    """The last and next time a cron schedule fires. croniter takes about a millisecond per
    call; a schedule's answer holds until its next time, so it is kept until then."""

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self._known: dict[tuple[str, str | None], tuple[datetime, datetime]] = {}

    def last(self, schedule: str, time_zone: str | None, now: datetime) -> datetime | None:
        key = (schedule, time_zone)
        known = self._known.get(key)
        if known is not None and known[0] <= now < known[1]:
            return known[0]
        try:
            local = now.astimezone(ZoneInfo(time_zone) if time_zone else UTC)
            last = croniter(schedule, local).get_prev(datetime)
            following = croniter(schedule, local).get_next(datetime)
        except (ValueError, KeyError, LookupError):  # status says InvalidSpec
            return None
        if len(self._known) >= self.MAX_ENTRIES:
            self._known.clear()
        self._known[key] = (last, following)
        return last


# --------------------------------------------------------------------------- reading


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _timestamp(value: Any) -> float | None:
    try:
        moment = parse_time(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return moment.timestamp() if moment is not None else None


def _duration_seconds(value: Any) -> float | None:
    try:
        return parse_duration(value).total_seconds() if isinstance(value, str) else None
    except ValueError:
        return None


# The spec fields a scrape reads (below); the pipeline cache (handlers/caches.py) keeps only
# these of a spec.
METRICS_SPEC_FIELDS = ("schedule", "timeZone", "suspend", "freshness", "metrics", "lineage")


@dataclass(frozen=True)
class _View:
    """One pipeline object as the scrape reads it: the stored dicts, read defensively (a
    status edited by hand, or written by another version, costs its own series only)."""

    key: PipelineKey
    status: Mapping[str, Any]
    spec: Mapping[str, Any]
    history: RunHistory
    now: datetime
    clock: ScheduleClock
    lineage_by_default: bool

    @classmethod
    def of(cls, body: Mapping[str, Any], scrape: _Scrape) -> _View:
        status, spec = _dict(body.get("status")), _dict(body.get("spec"))
        key = pipeline_key(body)
        return cls(
            key, status, spec, scrape.history, scrape.now, scrape.clock, scrape.lineage_by_default
        )

    @property
    def lineage_on(self) -> bool:
        """Whether the stages emit OpenLineage: spec.lineage, else the chart's default."""
        settings = _dict(self.spec.get("lineage"))
        if settings.get("enabled") is False:
            return False
        return bool(settings.get("url")) or self.lineage_by_default

    @property
    def last_run(self) -> Mapping[str, Any]:
        return _dict(self.status.get("lastRun"))

    @property
    def scheduled(self) -> bool:
        return not self.spec.get("suspend") and isinstance(self.spec.get("schedule"), str)

    def latest_stages(self) -> dict[str, Mapping[str, Any]]:
        """Per stage, its result in the latest run that finished it (lastRun, else the last
        successful run: a run in progress has not reached its later stages yet)."""
        latest: dict[str, Mapping[str, Any]] = {}
        for run in (self.last_run, _dict(self.status.get("lastSuccessfulRun"))):
            for stage in _dicts(run.get("stages")):
                name = _text(stage.get("stage"))
                if name in STAGES and stage.get("result") in _FINISHED_STAGES:
                    latest.setdefault(name, stage)
        return dict(sorted(latest.items(), key=lambda item: STAGES.index(item[0])))


@dataclass(frozen=True)
class _Scrape:
    history: RunHistory
    now: datetime
    clock: ScheduleClock
    lineage_by_default: bool = False  # the chart's lineage.url is set


class Sample(NamedTuple):
    labels: tuple[str, ...]  # values of the family's own labels
    value: float | None  # None: no sample
    suffix: str = ""  # _bucket, _count, _sum of a histogram
    le: str | None = None  # a bucket's bound


Samples = Iterator[Sample]


def _one(value: float | None) -> Samples:
    yield Sample((), value)


# --------------------------------------------------------------------------- families


@dataclass(frozen=True)
class Family:
    """One metric family: its name (with `_total` for a counter), type, help, the labels after
    `namespace` and `pipeline`, and how to read its samples from one pipeline."""

    name: str
    type: Literal["gauge", "counter", "histogram"]
    help: str
    labels: tuple[str, ...]
    samples: Callable[[_View], Samples]


def _conditions(v: _View) -> Samples:
    for condition in _dicts(v.status.get("conditions")):
        labels = (condition.get("type"), condition.get("status"), condition.get("reason"))
        if all(isinstance(label, str) for label in labels):
            yield Sample(tuple(str(label) for label in labels), 1)


def _runs(v: _View) -> Samples:
    """Every result from a pipeline's first scrape, 0 until counted: `increase()` then sees
    the first run of each result too (a series born at 1 hides its first increment)."""
    counted = v.history.runs(v.key)
    for result in sorted(r.lower() for r in _FINISHED_RUNS):
        yield Sample((result,), counted.get(result, 0))


def _lineage(position: int) -> Callable[[_View], Samples]:
    """A lineage counter per stage: 0 from the first scrape of a pipeline whose stages emit
    (so `increase()` sees the first failure), else from the first stage that reported."""

    def samples(v: _View) -> Samples:
        counted = v.history.lineage(v.key)
        stages = STAGES if v.lineage_on else tuple(s for s in STAGES if s in counted)
        for stage in stages:
            yield Sample((stage,), counted.get(stage, (0, 0))[position])

    return samples


def _stage_durations(v: _View) -> Samples:
    durations = v.history.durations(v.key)
    for stage in sorted(durations, key=STAGES.index):
        buckets, total = durations[stage]
        for bound, cumulative in buckets:
            yield Sample((stage,), cumulative, "_bucket", bound)
        yield Sample((stage,), buckets[-1][1], "_count")
        yield Sample((stage,), total, "_sum")


def _schedule_last(v: _View) -> Samples:
    if v.scheduled:
        time_zone = _text(v.spec.get("timeZone"))
        previous = v.clock.last(str(v.spec["schedule"]), time_zone, v.now)
        yield Sample((), previous.timestamp() if previous else None)


def _stage_field(field_name: str) -> Callable[[_View], Samples]:
    def samples(v: _View) -> Samples:
        for name, stage in v.latest_stages().items():
            yield Sample((name,), _number(stage.get(field_name)))

    return samples


def _tables(field_name: str, read: Callable[[Any], float | None]) -> Callable[[_View], Samples]:
    def samples(v: _View) -> Samples:
        for table in _dicts(v.status.get("tables")):
            if isinstance(table.get("name"), str):
                yield Sample((table["name"],), read(table.get(field_name)))

    return samples


def _checks(v: _View) -> Samples:
    quality = _dict(v.status.get("quality"))
    if quality:
        for result in ("passed", "failed", "warned"):
            yield Sample((result,), _number(quality.get(result, 0)))


def _failed_checks(v: _View) -> Samples:
    for failure in _dicts(_dict(v.status.get("quality")).get("failures")):
        name, severity = _text(failure.get("name")), _text(failure.get("severity"))
        if name is not None and severity is not None:
            yield Sample((name, severity), 1)


def _published(field_name: str, read: Callable[[Any], float | None]) -> Callable[[_View], Samples]:
    def samples(v: _View) -> Samples:
        for published in _dicts(v.status.get("published")):
            target, table = _text(published.get("target")), _text(published.get("table"))
            if target is not None and table is not None:
                yield Sample((target, table), read(published.get(field_name)))

    return samples


def _warehouse(field_name: str, read: Callable[[Any], float | None]) -> Callable[[_View], Samples]:
    return lambda v: _one(read(_dict(v.status.get("warehouse")).get(field_name)))


def _kpis(field_name: str, read: Callable[[Any], float | None]) -> Callable[[_View], Samples]:
    """`status.kpis` as the check stage computed them; a KPI whose aggregate was NULL or
    failed has no value."""

    def samples(v: _View) -> Samples:
        for kpi in _dicts(v.status.get("kpis")):
            if isinstance(kpi.get("name"), str):
                yield Sample((kpi["name"],), read(kpi.get(field_name)))

    return samples


def _declared_kpis(v: _View) -> Samples:
    for metric in _dicts(v.spec.get("metrics")):
        if isinstance(metric.get("name"), str):
            table, help_text = str(metric.get("table") or ""), str(metric.get("help") or "")
            yield Sample((metric["name"], table, help_text), 1)


def _gauge(name: str, help: str, samples: Callable[[_View], Samples], *labels: str) -> Family:
    return Family(name, "gauge", help, labels, samples)


def _freshness(v: _View, key: str) -> float | None:
    return _duration_seconds(_dict(v.spec.get("freshness")).get(key))


FAMILIES = (
    _gauge("duckherd_pipeline_info", "1 for every DataPipeline served.", lambda v: _one(1)),
    _gauge(
        "duckherd_pipeline_condition",
        "1 for each status condition, with its status and reason.",
        _conditions,
        *("type", "status", "reason"),
    ),
    Family(
        "duckherd_pipeline_runs_total",
        "counter",
        "Finished runs by result (succeeded, failed, blocked), as this operator process saw them.",
        ("result",),
        _runs,
    ),
    _gauge(
        "duckherd_pipeline_running",
        "1 while the latest run is running.",
        lambda v: _one(1 if v.last_run.get("result") == "Running" else 0),
    ),
    _gauge(
        "duckherd_pipeline_last_run_timestamp_seconds",
        "When the latest run started.",
        lambda v: _one(_timestamp(v.last_run.get("startTime"))),
    ),
    _gauge(
        "duckherd_pipeline_last_success_timestamp_seconds",
        "When the latest successful run ended.",
        lambda v: _one(_timestamp(v.status.get("lastSuccessfulTime"))),
    ),
    _gauge(
        "duckherd_pipeline_last_failure_timestamp_seconds",
        "When the latest failed or blocked run ended.",
        lambda v: _one(_timestamp(v.status.get("lastFailureTime"))),
    ),
    _gauge(
        "duckherd_pipeline_schedule_last_timestamp_seconds",
        "The latest time the schedule called for a run (absent while suspended).",
        _schedule_last,
    ),
    _gauge(
        "duckherd_pipeline_schedule_next_timestamp_seconds",
        "The next scheduled run (absent while suspended).",
        lambda v: _one(_timestamp(v.status.get("nextScheduleTime")) if v.scheduled else None),
    ),
    _gauge(
        "duckherd_pipeline_last_load_timestamp_seconds",
        "The last successful ingest.",
        lambda v: _one(_timestamp(_dict(v.status.get("freshness")).get("lastLoadedAt"))),
    ),
    _gauge(
        "duckherd_pipeline_freshness_warn_after_seconds",
        "spec.freshness.warnAfter.",
        lambda v: _one(_freshness(v, "warnAfter")),
    ),
    _gauge(
        "duckherd_pipeline_freshness_error_after_seconds",
        "spec.freshness.errorAfter.",
        lambda v: _one(_freshness(v, "errorAfter")),
    ),
    Family(
        "duckherd_stage_duration_seconds",
        "histogram",
        "Duration of finished stages, as the stage measured it.",
        ("stage",),
        _stage_durations,
    ),
    Family(
        "duckherd_lineage_events_total",
        "counter",
        "OpenLineage events the stages delivered, as this operator process saw them.",
        ("stage",),
        _lineage(0),
    ),
    Family(
        "duckherd_lineage_failures_total",
        "counter",
        "Stage runs whose OpenLineage delivery failed or timed out (lineage then stays off for "
        "the rest of that stage; the stage itself is not affected).",
        ("stage",),
        _lineage(1),
    ),
    _gauge(
        "duckherd_stage_last_duration_seconds",
        "Duration of the stage in the latest run that ran it.",
        _stage_field("durationSeconds"),
        "stage",
    ),
    _gauge(
        "duckherd_stage_last_peak_memory_bytes",
        "Peak resident memory of the stage's process in the latest run that ran it.",
        _stage_field("peakMemoryBytes"),
        "stage",
    ),
    _gauge(
        "duckherd_stage_last_cpu_seconds",
        "CPU time (user + system) of the stage in the latest run that ran it.",
        _stage_field("cpuSeconds"),
        "stage",
    ),
    _gauge(
        "duckherd_table_rows", "Rows in the warehouse table.", _tables("rows", _number), "table"
    ),
    _gauge(
        "duckherd_table_last_load_timestamp_seconds",
        "When the table was last written.",
        _tables("loadedAt", _timestamp),
        "table",
    ),
    _gauge(
        "duckherd_pipeline_checks",
        "The latest check verdict by result (passed, failed, warned).",
        _checks,
        "result",
    ),
    _gauge(
        "duckherd_pipeline_checks_timestamp_seconds",
        "When the latest checks ran.",
        lambda v: _one(_timestamp(_dict(v.status.get("quality")).get("checkedAt"))),
    ),
    _gauge(
        "duckherd_check_failed",
        "1 for each check that failed in the latest verdict.",
        _failed_checks,
        *("check", "severity"),
    ),
    _gauge(
        "duckherd_published_rows",
        "Rows the latest successful publish sent to the target.",
        _published("rows", _number),
        *("target", "table"),
    ),
    _gauge(
        "duckherd_published_timestamp_seconds",
        "When the latest successful publish happened.",
        _published("publishedAt", _timestamp),
        *("target", "table"),
    ),
    _gauge(
        "duckherd_warehouse_size_bytes",
        "The DuckDB warehouse file and its write-ahead log.",
        _warehouse("sizeBytes", _number),
    ),
    _gauge(
        "duckherd_warehouse_volume_capacity_bytes",
        "Capacity of the filesystem holding the warehouse.",
        _warehouse("capacityBytes", _number),
    ),
    _gauge(
        "duckherd_warehouse_volume_available_bytes",
        "Bytes available to the stages on the warehouse's filesystem.",
        _warehouse("availableBytes", _number),
    ),
    _gauge(
        "duckherd_warehouse_measured_timestamp_seconds",
        "When a stage measured the warehouse.",
        _warehouse("measuredAt", _timestamp),
    ),
    _gauge(
        "duckherd_kpi", "Business KPIs declared in spec.metrics.", _kpis("value", _number), "name"
    ),
    _gauge(
        "duckherd_kpi_computed_timestamp_seconds",
        "When the KPI was computed.",
        _kpis("computedAt", _timestamp),
        "name",
    ),
    _gauge(
        "duckherd_kpi_info",
        "1 per declared KPI, with its table and help text from spec.metrics.",
        _declared_kpis,
        *("name", "table", "help"),
    ),
)


# --------------------------------------------------------------------------- text


def _escape_label(value: str) -> str:
    """The text format's label value escapes: backslash, double quote, line feed."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _line(family: Family, key: PipelineKey, sample: Sample, value: float) -> str:
    names = (*BASE_LABELS, *family.labels)
    pairs = [
        f'{name}="{_escape_label(value)}"'
        for name, value in zip(names, (*key, *sample.labels), strict=True)
    ]
    if sample.le is not None:
        pairs.append(f'le="{sample.le}"')
    return f"{family.name}{sample.suffix}{{{','.join(pairs)}}} {_format_value(value)}\n"


CHUNK_BYTES = 64 * 1024


def pipeline_key(body: Mapping[str, Any]) -> PipelineKey:
    return str(body["metadata"].get("namespace") or ""), str(body["metadata"]["name"])


def render(
    bodies: Iterable[Mapping[str, Any]],
    history: RunHistory,
    now: datetime,
    clock: ScheduleClock,
    lineage_by_default: bool = False,
) -> Iterator[bytes]:
    """The per-pipeline families of these DataPipeline objects as Prometheus text, family by
    family (the format wants each family's samples together), in chunks of about 64 KiB:
    nothing but the chunk under way is held, whatever the fleet's size."""
    scrape = _Scrape(history, now, clock, lineage_by_default)
    views = [_View.of(body, scrape) for body in sorted(bodies, key=pipeline_key)]
    buffer = bytearray()
    for family in FAMILIES:
        help_text = family.help.replace("\\", "\\\\").replace("\n", "\\n")
        buffer += f"# HELP {family.name} {help_text}\n# TYPE {family.name} {family.type}\n".encode()
        for view in views:
            for sample in family.samples(view):
                if sample.value is not None:
                    buffer += _line(family, view.key, sample, sample.value).encode()
            if len(buffer) >= CHUNK_BYTES:
                yield bytes(buffer)
                buffer.clear()
    yield bytes(buffer)


def snapshot(index: Mapping[Any, Iterable[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The pipeline objects in a Kopf index, read from the scrape thread while the event loop
    updates it: the key list and each store are copied in one C-level step each (atomic under
    the GIL), a key removed meanwhile is skipped, and the objects themselves are replaced,
    never changed, by the index."""
    bodies: list[dict[str, Any]] = []
    for key in list(index):
        store = index.get(key)
        bodies.extend(list(store) if store is not None else [])
    return bodies


class PipelineMetrics:
    """What /metrics serves per pipeline: the watch cache's pipelines while the operator runs
    (handlers/monitoring.py attaches and detaches it), and the accumulated history."""

    def __init__(
        self, history: RunHistory, now: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.history = history
        self._now = now
        self._clock = ScheduleClock()
        self._pipelines: Mapping[Any, Iterable[dict[str, Any]]] = {}

    def attach(self, pipelines: Mapping[Any, Iterable[dict[str, Any]]]) -> None:
        self._pipelines = pipelines

    def detach(self) -> None:
        self._pipelines = {}

    def render(self) -> Iterator[bytes]:
        bodies = snapshot(self._pipelines)
        self.history.retain({pipeline_key(body) for body in bodies})
        lineage_by_default = bool(os.environ.get(ENV_LINEAGE_URL))
        return render(bodies, self.history, self._now(), self._clock, lineage_by_default)
