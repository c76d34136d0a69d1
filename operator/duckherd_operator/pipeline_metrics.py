"""Per-pipeline metrics (docs/metrics.md): made at scrape time from what the operator holds.

Almost every series is derived, when Prometheus scrapes, from the DataPipelines in the watch
cache (their spec and the status the operator wrote): nothing per pipeline is kept for them,
and a deleted pipeline's series go with it. Only what must accumulate — finished runs by
result and the stage duration histogram — lives in `RunHistory`, a few integers per stage,
recorded when the operator writes a run's end into status and dropped when the pipeline goes.

prometheus_client's labelled metrics would keep a child object (with a lock and a value
object per bucket) for every series; this module keeps plain integers and builds the
families only while a scrape runs.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from pydantic import ValidationError

from duckherd.api import STAGES, DataPipelineStatus, RunStatus, StageResult, parse_duration
from duckherd.status import parse_time

log = logging.getLogger("duckherd.operator.metrics")

PipelineKey = tuple[str, str]  # namespace, name
BASE_LABELS = ("namespace", "pipeline")
STAGE_DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0)
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
                if stage.result in _FINISHED_STAGES and stage.durationSeconds is not None:
                    stages = self._durations.setdefault(key, {})
                    stages.setdefault(stage.stage, _Durations()).observe(stage.durationSeconds)
            ended = run.result in _FINISHED_RUNS
            if ended and (before is None or (before.id, before.result) != (run.id, run.result)):
                runs = self._runs.setdefault(key, {})
                runs[run.result.lower()] = runs.get(run.result.lower(), 0) + 1

    def forget(self, key: PipelineKey) -> None:
        with self._lock:
            self._runs.pop(key, None)
            self._durations.pop(key, None)

    def runs(self, key: PipelineKey) -> dict[str, int]:
        with self._lock:
            return dict(self._runs.get(key, {}))

    def durations(self, key: PipelineKey) -> dict[str, tuple[list[tuple[str, float]], float]]:
        with self._lock:
            stages = self._durations.get(key, {})
            return {stage: (d.cumulative(), d.total) for stage, d in stages.items()}

    def retain(self, keys: set[PipelineKey]) -> None:
        """Drop what is kept for pipelines not among `keys` (a delete missed by the watch)."""
        with self._lock:
            for kept in (self._runs, self._durations):
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


# --------------------------------------------------------------------------- families


def _timestamp(text: str | None) -> float | None:
    try:
        moment = parse_time(text)
    except ValueError:
        return None
    return moment.timestamp() if moment is not None else None


def _gauge(name: str, documentation: str, *labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=[*BASE_LABELS, *labels])


class _Families:
    """Every per-pipeline family of docs/metrics.md, filled pipeline by pipeline."""

    def __init__(self) -> None:
        self.info = _gauge("duckherd_pipeline_info", "1 for every DataPipeline served.")
        self.condition = _gauge(
            "duckherd_pipeline_condition",
            "1 for each status condition, with its status and reason.",
            "type",
            "status",
            "reason",
        )
        self.runs = CounterMetricFamily(
            "duckherd_pipeline_runs",
            "Finished runs by result (succeeded, failed, blocked), as this operator saw them.",
            labels=[*BASE_LABELS, "result"],
        )
        self.running = _gauge("duckherd_pipeline_running", "1 while the latest run is running.")
        self.last_run = _gauge(
            "duckherd_pipeline_last_run_timestamp_seconds", "When the latest run started."
        )
        self.last_success = _gauge(
            "duckherd_pipeline_last_success_timestamp_seconds",
            "When the latest successful run ended.",
        )
        self.last_failure = _gauge(
            "duckherd_pipeline_last_failure_timestamp_seconds",
            "When the latest failed or blocked run ended.",
        )
        self.schedule_last = _gauge(
            "duckherd_pipeline_schedule_last_timestamp_seconds",
            "The latest time the schedule called for a run (absent while suspended).",
        )
        self.schedule_next = _gauge(
            "duckherd_pipeline_schedule_next_timestamp_seconds",
            "The next scheduled run (absent while suspended).",
        )
        self.last_load = _gauge(
            "duckherd_pipeline_last_load_timestamp_seconds", "The last successful ingest."
        )
        self.warn_after = _gauge(
            "duckherd_pipeline_freshness_warn_after_seconds", "spec.freshness.warnAfter."
        )
        self.error_after = _gauge(
            "duckherd_pipeline_freshness_error_after_seconds", "spec.freshness.errorAfter."
        )
        self.stage_duration = HistogramMetricFamily(
            "duckherd_stage_duration_seconds",
            "Duration of finished stages, as the stage measured it.",
            labels=[*BASE_LABELS, "stage"],
        )
        self.stage_last_duration = _gauge(
            "duckherd_stage_last_duration_seconds",
            "Duration of the stage in the latest run that ran it.",
            "stage",
        )
        self.stage_peak_memory = _gauge(
            "duckherd_stage_last_peak_memory_bytes",
            "Peak resident memory of the stage's process in the latest run that ran it.",
            "stage",
        )
        self.stage_cpu = _gauge(
            "duckherd_stage_last_cpu_seconds",
            "CPU time (user + system) of the stage in the latest run that ran it.",
            "stage",
        )
        self.table_rows = _gauge("duckherd_table_rows", "Rows in the warehouse table.", "table")
        self.table_loaded = _gauge(
            "duckherd_table_last_load_timestamp_seconds",
            "When the table was last written.",
            "table",
        )
        self.checks = _gauge(
            "duckherd_pipeline_checks",
            "The latest check verdict by result (passed, failed, warned).",
            "result",
        )
        self.checks_time = _gauge(
            "duckherd_pipeline_checks_timestamp_seconds", "When the latest checks ran."
        )
        self.check_failed = _gauge(
            "duckherd_check_failed",
            "1 for each check that failed in the latest verdict.",
            "check",
            "severity",
        )
        self.published_rows = _gauge(
            "duckherd_published_rows",
            "Rows the latest successful publish sent to the target.",
            "target",
            "table",
        )
        self.published_time = _gauge(
            "duckherd_published_timestamp_seconds",
            "When the latest successful publish happened.",
            "target",
            "table",
        )
        self.warehouse_size = _gauge(
            "duckherd_warehouse_size_bytes", "The DuckDB warehouse file and its write-ahead log."
        )
        self.volume_capacity = _gauge(
            "duckherd_warehouse_volume_capacity_bytes",
            "Capacity of the filesystem holding the warehouse.",
        )
        self.volume_available = _gauge(
            "duckherd_warehouse_volume_available_bytes",
            "Bytes available to the stages on the warehouse's filesystem.",
        )
        self.warehouse_measured = _gauge(
            "duckherd_warehouse_measured_timestamp_seconds", "When a stage measured the warehouse."
        )
        self.kpi = _gauge("duckherd_kpi", "Business KPIs declared in spec.metrics.", "name")
        self.kpi_time = _gauge(
            "duckherd_kpi_computed_timestamp_seconds", "When the KPI was computed.", "name"
        )
        self.kpi_info = _gauge(
            "duckherd_kpi_info",
            "1 per declared KPI, with its table and help text from spec.metrics.",
            "name",
            "table",
            "help",
        )

    def all(self) -> list[Metric]:
        return [value for value in vars(self).values() if isinstance(value, Metric)]


def _put(family: GaugeMetricFamily, labels: list[str], value: float | None) -> None:
    if value is not None:
        family.add_metric(labels, value)


def read_status(body: Mapping[str, Any]) -> DataPipelineStatus:
    """The stored status; fields this version does not know are left out, and a status that
    does not validate counts as empty (the pipeline still has its info series)."""
    raw = body.get("status") or {}
    known = {k: v for k, v in raw.items() if k in DataPipelineStatus.model_fields}
    try:
        return DataPipelineStatus.model_validate(known)
    except ValidationError:
        log.debug("status of %s is not readable for metrics", body.get("metadata", {}).get("name"))
        return DataPipelineStatus()


def _duration_seconds(text: Any) -> float | None:
    try:
        return parse_duration(str(text)).total_seconds() if text else None
    except ValueError:
        return None


def _health(
    f: _Families,
    base: list[str],
    status: DataPipelineStatus,
    spec: Mapping[str, Any],
    now: datetime,
    clock: ScheduleClock,
) -> None:
    f.info.add_metric(base, 1)
    for condition in status.conditions:
        f.condition.add_metric([*base, condition.type, condition.status, condition.reason], 1)
    last = status.lastRun
    f.running.add_metric(base, 1 if last is not None and last.result == "Running" else 0)
    _put(f.last_run, base, _timestamp(last.startTime) if last else None)
    _put(f.last_success, base, _timestamp(status.lastSuccessfulTime))
    _put(f.last_failure, base, _timestamp(status.lastFailureTime))
    if not spec.get("suspend") and isinstance(spec.get("schedule"), str):
        previous = clock.last(spec["schedule"], spec.get("timeZone"), now)
        _put(f.schedule_last, base, previous.timestamp() if previous else None)
        _put(f.schedule_next, base, _timestamp(status.nextScheduleTime))
    freshness = spec.get("freshness") or {}
    _put(f.last_load, base, _timestamp(status.freshness.lastLoadedAt if status.freshness else None))
    _put(f.warn_after, base, _duration_seconds(freshness.get("warnAfter")))
    _put(f.error_after, base, _duration_seconds(freshness.get("errorAfter")))


def _latest_stage_results(status: DataPipelineStatus) -> dict[str, StageResult]:
    """Per stage, its result in the latest run that finished it (lastRun, else the last
    successful run: a run in progress has not reached its later stages yet)."""
    latest: dict[str, StageResult] = {}
    for run in (status.lastRun, status.lastSuccessfulRun):
        for stage in run.stages if run else []:
            if stage.result in _FINISHED_STAGES:
                latest.setdefault(stage.stage, stage)
    return latest


def _stages(f: _Families, base: list[str], status: DataPipelineStatus) -> None:
    for name, stage in sorted(
        _latest_stage_results(status).items(), key=lambda i: STAGES.index(i[0])
    ):
        labels = [*base, name]
        _put(f.stage_last_duration, labels, stage.durationSeconds)
        _put(f.stage_peak_memory, labels, stage.peakMemoryBytes)
        _put(f.stage_cpu, labels, stage.cpuSeconds)


def _data(f: _Families, base: list[str], status: DataPipelineStatus) -> None:
    for table in status.tables:
        f.table_rows.add_metric([*base, table.name], table.rows)
        _put(f.table_loaded, [*base, table.name], _timestamp(table.loadedAt))
    quality = status.quality
    if quality is not None:
        for result, count in (
            ("passed", quality.passed),
            ("failed", quality.failed),
            ("warned", quality.warned),
        ):
            f.checks.add_metric([*base, result], count)
        _put(f.checks_time, base, _timestamp(quality.checkedAt))
        for failure in quality.failures:
            f.check_failed.add_metric([*base, failure.name, failure.severity], 1)
    for published in status.published:
        labels = [*base, published.target, published.table]
        f.published_rows.add_metric(labels, published.rows)
        _put(f.published_time, labels, _timestamp(published.publishedAt))
    warehouse = status.warehouse
    if warehouse is not None:
        f.warehouse_size.add_metric(base, warehouse.sizeBytes)
        f.volume_capacity.add_metric(base, warehouse.capacityBytes)
        f.volume_available.add_metric(base, warehouse.availableBytes)
        _put(f.warehouse_measured, base, _timestamp(warehouse.measuredAt))


def _kpis(
    f: _Families, base: list[str], status: DataPipelineStatus, spec: Mapping[str, Any]
) -> None:
    """`status.kpis` as the check stage computed them (a KPI whose aggregate was NULL or
    failed has no value series); names, tables and help texts from `spec.metrics`."""
    for metric in spec.get("metrics") or []:
        if isinstance(metric, dict) and isinstance(metric.get("name"), str):
            table, help_text = str(metric.get("table") or ""), str(metric.get("help") or "")
            f.kpi_info.add_metric([*base, metric["name"], table, help_text], 1)
    for kpi in status.kpis:
        if kpi.value is not None:
            f.kpi.add_metric([*base, kpi.name], kpi.value)
            _put(f.kpi_time, [*base, kpi.name], _timestamp(kpi.computedAt))


def _accumulated(f: _Families, base: list[str], key: PipelineKey, history: RunHistory) -> None:
    for result, count in sorted(history.runs(key).items()):
        f.runs.add_metric([*base, result], count)
    durations = history.durations(key)
    for stage in sorted(durations, key=STAGES.index):
        buckets, total = durations[stage]
        f.stage_duration.add_metric([*base, stage], buckets, total)


def pipeline_key(body: Mapping[str, Any]) -> PipelineKey:
    return str(body["metadata"].get("namespace") or ""), str(body["metadata"]["name"])


def pipeline_metrics(
    bodies: Iterable[Mapping[str, Any]], history: RunHistory, now: datetime, clock: ScheduleClock
) -> list[Metric]:
    """The per-pipeline families for these DataPipeline objects (pure but for the clock's cache)."""
    f = _Families()
    for body in sorted(
        bodies, key=lambda b: (b["metadata"].get("namespace") or "", b["metadata"]["name"])
    ):
        key = pipeline_key(body)
        base = list(key)
        status = read_status(body)
        _health(f, base, status, body.get("spec") or {}, now, clock)
        _stages(f, base, status)
        _data(f, base, status)
        _kpis(f, base, status, body.get("spec") or {})
        _accumulated(f, base, key, history)
    return f.all()


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


class PipelineCollector(Collector):
    """Registered while the operator runs (handlers/monitoring.py)."""

    def __init__(
        self,
        pipelines: Mapping[Any, Iterable[dict[str, Any]]],
        history: RunHistory,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pipelines = pipelines
        self._history = history
        self._now = now
        self._clock = ScheduleClock()

    def describe(self) -> Iterator[Metric]:
        return iter(())  # names are listed in docs/metrics.md; no collect() at registration

    def collect(self) -> Iterator[Metric]:
        bodies = snapshot(self._pipelines)
        self._history.retain({pipeline_key(body) for body in bodies})
        yield from pipeline_metrics(bodies, self._history, self._now(), self._clock)
