"""Retention at the end of ingest: raw rows by age or by load, `_duckherd` history by run, and
never a raw row no transform has built from yet."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from duckherd.api import DataPipeline, DataPipelineStatus
from duckherd.status import RunObservation, StageObservation, compute_status, rfc3339
from duckherd.summary import StageSummary
from duckherd_jobs.context import StageContext
from duckherd_jobs.runner import run_stage
from duckherd_jobs.warehouse import ensure_layout, record_run
from tests.jobs.backup_support import count, customer, run, shop
from tests.jobs.ingest_support import FakeApi

APPEND = {"writeDisposition": "append"}


def batch(day: int, first: int, size: int = 10) -> list[dict[str, Any]]:
    return [customer(number, day) for number in range(first, first + size)]


def loads(warehouse: Path) -> list[str]:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        return [
            str(row[0])
            for row in connection.execute(
                "SELECT DISTINCT _run_id FROM raw.customers ORDER BY 1"
            ).fetchall()
        ]


def test_keep_loads_prunes_older_loads_and_status_says_how_many(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    with FakeApi(batch(1, 1)) as api:
        pipeline = shop(api.url, transform=False, source={**APPEND, "keepLoads": 2})
        for day in (1, 2, 3):
            api.state.records = batch(day, day * 100)
            summaries = run(pipeline, warehouse, f"run-{day}")
    assert loads(warehouse) == ["run-2", "run-3"]
    ingest = summaries[0]
    assert ingest.pruned == {"raw.customers": 10}
    assert ingest.tables["raw.customers"].rows == 20 == count(warehouse, "raw.customers")
    observation = StageObservation("ingest", None, "Succeeded", summary=ingest)
    status = compute_status(
        spec=pipeline.spec,
        generation=None,
        previous=DataPipelineStatus(),
        run=RunObservation("run-3", "Manual", (observation,)),
        now=datetime.now(UTC),
    )
    assert status.retention is not None
    assert (status.retention.runId, status.retention.rowsPruned) == ("run-3", 10)
    assert status.retention.tables == {"raw.customers": 10}


def test_retain_for_prunes_by_age_and_history_keeps_the_newest_runs(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    with FakeApi(batch(1, 1)) as api:
        pipeline = shop(
            api.url, transform=False, source={**APPEND, "retainFor": "1ms"}, history={"keepRuns": 2}
        )
        for day in (1, 2, 3, 4):
            api.state.records = batch(day, day * 100)
            summaries = run(pipeline, warehouse, f"run-{day}")
    assert loads(warehouse) == ["run-4"]  # every earlier load is older than 1ms
    assert summaries[0].pruned["raw.customers"] == 10

    with duckdb.connect(str(warehouse), read_only=True) as connection:
        kept = connection.execute(
            "SELECT DISTINCT run_id FROM _duckherd.runs ORDER BY 1"
        ).fetchall()
    assert kept == [("run-3",), ("run-4",)]


def test_rows_no_transform_has_built_from_are_never_pruned(tmp_path: Path) -> None:
    """keepLoads 1 with a transform: until a transform succeeded nothing goes; afterwards only
    rows loaded before the last successful transform started."""
    warehouse = tmp_path / "warehouse.duckdb"
    with FakeApi(batch(1, 1)) as api:
        pipeline = shop(api.url, source={**APPEND, "keepLoads": 1})
        ingest_only = shop(api.url, transform=False, source={**APPEND, "keepLoads": 1})
        ingest_only = ingest_only.model_copy(
            update={
                "spec": ingest_only.spec.model_copy(update={"transform": pipeline.spec.transform})
            }
        )
        for day in (1, 2):
            api.state.records = batch(day, day * 100)
            summaries = run_ingest_only(pipeline, warehouse, f"run-{day}")
            assert summaries.pruned == {}  # no transform has built from these rows yet
        assert loads(warehouse) == ["run-1", "run-2"]
        run(pipeline, warehouse, "run-3")  # nothing new to load; the transform builds
        api.state.records = batch(4, 400)
        last = run_ingest_only(pipeline, warehouse, "run-4")
    assert loads(warehouse) == ["run-4"]
    assert last.pruned == {"raw.customers": 20}
    assert count(warehouse, "marts.customer_analytics") == 20  # built before, untouched


def run_ingest_only(pipeline: DataPipeline, warehouse: Path, run_id: str) -> StageSummary:
    ctx = StageContext(
        pipeline=pipeline, warehouse=warehouse, run_id=run_id, env={}, lock_timeout_seconds=60
    )
    summary = run_stage("ingest", ctx)
    assert summary.ok, summary.error
    return summary


def test_a_stage_start_is_recorded_to_the_microsecond(tmp_path: Path) -> None:
    """Retention compares the last transform's start with the rows' `_loaded_at`: a start cut
    to whole seconds would hide loads of the same second from pruning until the next run."""
    started = datetime(2026, 12, 2, 13, 37, 54, 812345, tzinfo=UTC)
    summary = StageSummary(stage="transform", ok=True, runId="r1", startedAt=rfc3339(started))
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as connection:
        ensure_layout(connection)
        record_run(connection, summary, started_at=started)
        row = connection.execute("SELECT started_at FROM _duckherd.runs").fetchone()
    assert row is not None and row[0] == started
