"""The fault matrix: real stage processes SIGKILLed at named points, full volumes, restarted
targets — then the warehouse, the cursors and the published versions are checked, the next run
must complete, and what it leaves is compared with an uninterrupted pipeline.

`make test` runs a few cases (marked nothing special); the whole matrix is marked
`fault_matrix` and runs with `make bench-faults` (DUCKHERD_FAULT_MATRIX=1), which also
writes the fault table (DUCKHERD_FAULT_TABLE). See docs/faults.md and tests/jobs/fault_support.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from duckherd.api import STAGES
from duckherd_jobs.ingest.stage import SPOOL_PREFIX, remove_stale_spools, spool_directory
from duckherd_jobs.transform.build_copy import leftover_builds
from tests.jobs.fault_support import (
    Case,
    Outcome,
    PublishedState,
    Sources,
    WarehouseState,
    consistency_problems,
    copy_warehouse,
    fill,
    lost_and_duplicated,
    postgres_leftovers,
    published_state,
    small_volume,
    warehouse_state,
    write_dbt_project,
)
from tests.jobs.ingest_support import FakeApi, served_directory
from tests.services import (
    REDIS_PASSWORD,
    PostgresServer,
    RedisServer,
    _as_postgres_user,
    _pg_bin,
    _wait_for_port,
    free_port,
)

pytestmark = pytest.mark.services

OLD_RUN, NEW_RUN, NEXT_RUN = "run-1", "run-2", "run-3"
RESULTS: list[Outcome] = []


@dataclass(frozen=True)
class World:
    directory: Path
    sources: Sources
    redis: RedisServer
    project: Path
    old_warehouse: Path
    old: WarehouseState
    new: WarehouseState
    old_published: PublishedState
    new_published: PublishedState

    def case(self, name: str, **changes: Any) -> Case:
        """A pipeline of its own whose warehouse and targets hold the OLD version."""
        case = Case(name, self.directory, self.sources, self.redis, self.project)
        case = replace(case, **changes)
        case.directory.mkdir(parents=True, exist_ok=True)
        copy_warehouse(self.old_warehouse, case.warehouse)
        published = case.run("publish", OLD_RUN)
        assert published.ok, published.error
        return case


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer, redis: RedisServer
) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("faults")
    files = directory / "files"
    files.mkdir()
    with FakeApi([]) as api, served_directory(files) as files_url:
        sources = Sources(api, postgres, files, files_url)
        project = write_dbt_project(directory / "project")
        reference = Case("reference", directory, sources, redis, project)
        sources.set_version(1)
        reference.run_all(OLD_RUN)
        old, old_published = warehouse_state(reference.warehouse), published_state(reference)
        old_warehouse = directory / "old.saved"
        copy_warehouse(reference.warehouse, old_warehouse)
        sources.set_version(2)
        reference.run_all(NEW_RUN)
        new, new_published = warehouse_state(reference.warehouse), published_state(reference)
        assert old.tables != new.tables and old_published.redis_rows != new_published.redis_rows
        yield World(
            directory,
            sources,
            redis,
            project,
            old_warehouse,
            old,
            new,
            old_published,
            new_published,
        )
    write_fault_table()


def write_fault_table() -> None:
    target = os.environ.get("DUCKHERD_FAULT_TABLE")
    if not target or not RESULTS:
        return
    lines = [
        "| fault | right after it: raw / marts / Redis / PostgreSQL | next run "
        "| rows lost | rows duplicated |",
        "|---|---|---|---|---|",
    ]
    for outcome in RESULTS:
        after = " / ".join(outcome.after.get(k, "?") for k in ("raw", "marts", "redis", "postgres"))
        notes = f" ({'; '.join(outcome.notes)})" if outcome.notes else ""
        lines.append(
            f"| {outcome.fault}{notes} | {after} | {outcome.next_run} | "
            f"{outcome.rows_lost} | {outcome.rows_duplicated} |"
        )
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    Path(target).write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------- assessments


def published_version(state: PublishedState, world: World) -> tuple[str, str]:
    def label(mine: Any, old: Any, new: Any) -> str:
        return "old" if mine == old else "new" if mine == new else "MIXED"

    return (
        label(state.redis_rows, world.old_published.redis_rows, world.new_published.redis_rows),
        label(
            state.postgres_rows,
            world.old_published.postgres_rows,
            world.new_published.postgres_rows,
        ),
    )


def assess_after_fault(world: World, case: Case, outcome: Outcome) -> None:
    """The warehouse opens and is consistent, every table and target holds a whole version."""
    assert consistency_problems(case.warehouse) == []
    state = warehouse_state(case.warehouse)
    raw = state.version_of(world.old, world.new, "raw.")
    marts = state.version_of(world.old, world.new, "marts.")
    redis_version, postgres_version = published_version(published_state(case), world)
    outcome.after = {
        "raw": raw,
        "marts": marts,
        "redis": redis_version,
        "postgres": postgres_version,
    }
    assert "MIXED" not in outcome.after.values(), outcome.after
    assert state.cursors == (world.old if raw == "old" else world.new).cursors
    assert postgres_leftovers(case) == []


def recover_and_compare(world: World, case: Case, outcome: Outcome) -> None:
    """The next run completes and leaves exactly what an uninterrupted pipeline holds."""
    case.run_all(NEXT_RUN)
    outcome.next_run = "completes"
    final = warehouse_state(case.warehouse)
    published = published_state(case)
    actual = {**final.tables, **published_tables(published)}
    expected = {**world.new.tables, **published_tables(world.new_published)}
    outcome.rows_lost, outcome.rows_duplicated = lost_and_duplicated(actual, expected)
    assert final.cursors == world.new.cursors
    assert published.redis_run == NEXT_RUN and published.postgres_run == NEXT_RUN
    assert leftover_builds(case.warehouse) == []
    assert list(case.directory.glob(".duckherd-spool-*")) == []
    assert (outcome.rows_lost, outcome.rows_duplicated) == (0, 0)


def published_tables(state: PublishedState) -> dict[str, list[tuple[Any, ...]]]:
    rows = state.redis_rows.items()
    documents = sorted((key, json.dumps(doc, sort_keys=True)) for key, doc in rows)
    return {"published.redis": documents, "published.postgres": list(state.postgres_rows)}


def stages_before(stage: str) -> tuple[str, ...]:
    return tuple(STAGES[: STAGES.index(stage)])


# ---------------------------------------------------------------------- SIGKILL at a point

KILL_POINTS = [
    ("ingest", "ingest.http.page-spooled"),
    ("ingest", "ingest.file.downloading"),
    ("ingest", "ingest.postgres.copied"),
    ("ingest", "ingest.load.begun"),
    ("ingest", "ingest.load.table-written"),
    ("ingest", "ingest.load.cursor-saved"),
    ("ingest", "ingest.load.committed"),
    ("transform", "transform.copied"),
    ("transform", "transform.model-built"),
    ("transform", "transform.built"),
    ("transform", "transform.swapped"),
    ("check", "check.evaluated"),
    ("publish", "publish.redis.staged"),
    ("publish", "publish.postgres.copied"),
    ("publish", "publish.postgres.swapped"),
    ("publish", "publish.target-done"),
]
# In `make test`: a kill inside the ingest transaction and one mid-swap (mid-dbt: see
# test_transform_atomic.py).
IN_MAKE_TEST = {"ingest.load.cursor-saved", "publish.postgres.swapped"}


def kill_case(stage: str, point: str) -> Any:
    marks = [] if point in IN_MAKE_TEST else [pytest.mark.fault_matrix]
    return pytest.param(stage, point, id=point, marks=marks)


@pytest.mark.parametrize(("stage", "point"), [kill_case(s, p) for s, p in KILL_POINTS])
def test_a_stage_killed_at_a_point_loses_and_duplicates_nothing(
    world: World, stage: str, point: str
) -> None:
    case = world.case("kill-" + point.replace(".", "-"))
    outcome = Outcome(fault=f"SIGKILL {stage} at `{point}`")
    for earlier in stages_before(stage):
        assert case.run(earlier, NEW_RUN).ok
    process = case.spawn(stage, NEW_RUN, point, case.directory / f"{case.name}.pauses")
    process.wait_paused()
    process.kill()

    assess_after_fault(world, case, outcome)
    recover_and_compare(world, case, outcome)
    RESULTS.append(outcome)


# ---------------------------------------------------------------------- a full volume


@pytest.mark.parametrize(
    "stage", ["ingest", pytest.param("transform", marks=pytest.mark.fault_matrix)]
)
def test_a_full_volume_fails_the_stage_in_words_and_loses_nothing(
    world: World, tmp_path: Path, stage: str
) -> None:
    with small_volume(tmp_path / "volume", "24m") as volume:
        case = world.case(f"full-{stage}", directory=volume)
        outcome = Outcome(fault=f"warehouse volume full (24 MiB tmpfs) during {stage}")
        for earlier in stages_before(stage):
            assert case.run(earlier, NEW_RUN).ok
        filler = fill(volume)

        summary = case.run(stage, NEW_RUN)

        assert not summary.ok
        assert summary.error is not None
        assert summary.error.startswith("the warehouse volume is full (")
        assert "grow it to at least 64Mi (spec.storage.size" in summary.error
        said = re.sub(r"\(/[^:]*: ", "(", summary.error.split(" (spec.storage")[0])
        outcome.notes.append(f"the stage says: “{said}”")
        filler.unlink()  # the volume grown
        assess_after_fault(world, case, outcome)
        recover_and_compare(world, case, outcome)
    RESULTS.append(outcome)


# ---------------------------------------------------------------------- targets restarted


@dataclass
class RestartableRedis:
    """A redis-server that keeps its data across restarts (RDB on SIGTERM), on one port."""

    directory: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def server(self) -> RedisServer:
        return RedisServer("127.0.0.1", self.port, REDIS_PASSWORD)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--requirepass",
                REDIS_PASSWORD,
                "--save",
                "3600 1",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port)

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)  # saves the RDB, as a pod's Redis would
        self.process.wait(timeout=60)


def restart_postgres(server: PostgresServer) -> None:
    """`pg_ctl restart -m fast`: every session ends, open transactions roll back."""
    with psycopg2.connect(server.dsn()) as connection, connection.cursor() as cursor:
        cursor.execute("SHOW data_directory")
        row = cursor.fetchone()
        assert row is not None
        data = row[0]
    # No pipes: the restarted server inherits pg_ctl's stdout and would hold them open.
    subprocess.run(
        _as_postgres_user([_pg_bin("pg_ctl"), "-D", data, "-m", "fast", "-w", "restart"]),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for_port(server.port)


@pytest.mark.fault_matrix
def test_redis_restarted_during_publish(world: World, tmp_path: Path) -> None:
    target = RestartableRedis(tmp_path, free_port())
    target.start()
    try:
        case = world.case("restart-redis", redis=target.server)
        outcome = Outcome(fault="Redis restarted during publish (new rows staged, not swapped)")
        for earlier in stages_before("publish"):
            assert case.run(earlier, NEW_RUN).ok
        process = case.spawn("publish", NEW_RUN, "publish.redis.staged", tmp_path / "pauses")
        process.wait_paused()
        target.stop()
        target.start()
        code = process.release()
        outcome.notes.append(f"publish exit {code}")
        assess_after_fault(world, case, outcome)
        recover_and_compare(world, case, outcome)
    finally:
        target.stop()
    RESULTS.append(outcome)


@pytest.mark.fault_matrix
def test_postgres_restarted_during_publish(world: World, tmp_path: Path) -> None:
    case = world.case("restart-postgres")
    outcome = Outcome(fault="PostgreSQL restarted during publish (rows copied, not renamed)")
    for earlier in stages_before("publish"):
        assert case.run(earlier, NEW_RUN).ok
    process = case.spawn("publish", NEW_RUN, "publish.postgres.copied", tmp_path / "pauses")
    process.wait_paused()
    restart_postgres(world.sources.postgres)
    code = process.release()
    outcome.notes.append(f"publish exit {code}")
    assess_after_fault(world, case, outcome)
    recover_and_compare(world, case, outcome)
    RESULTS.append(outcome)


def test_a_spool_in_use_is_kept_and_one_left_by_a_killed_ingest_removed(tmp_path: Path) -> None:
    with spool_directory(tmp_path) as live:
        (live / "customers.pages.ndjson").write_text("{}")
        stale = tmp_path / (SPOOL_PREFIX + "killed")
        stale.mkdir()
        (stale / ".in-use").touch()  # its flock died with its process

        remove_stale_spools(tmp_path)

        assert live.is_dir() and not stale.exists()
    assert list(tmp_path.iterdir()) == []
