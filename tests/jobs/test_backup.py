"""Backups and restores of a real warehouse built by real ingest and dbt runs (volume
destination; the S3 destination against a real server is in test_backup_s3.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import duckdb

from duckherd_jobs.backup import TaskContext, run_task
from duckherd_jobs.backup.destinations import DATA_FILE, RECORD_FILE
from tests.jobs.backup_support import count, cursors, customer, differences, moved_on, run, shop
from tests.jobs.ingest_support import FakeApi

BACKUP = {"schedule": "0 7 * * *", "keep": 2, "volume": {}}


def test_backup_delete_restore_run_equals_a_pipeline_never_interrupted(tmp_path: Path) -> None:
    """The acceptance case: back up, lose the warehouse, restore, run against a source that
    moved on — the warehouse holds what a pipeline that was never interrupted holds."""
    first = [customer(number, day=1) for number in range(1, 201)]
    with FakeApi(first) as api:
        pipeline = shop(api.url, backup=BACKUP)
        reference = tmp_path / "reference.duckdb"  # never interrupted
        restored = tmp_path / "restored.duckdb"  # the volume lost, then restored
        run(pipeline, reference, "run-1")
        ctx = TaskContext(pipeline=pipeline, warehouse=reference, backup_dir=tmp_path / "backups")
        made = run_task("backup", ctx)
        assert made.ok, made.error
        assert made.backup is not None and made.backup.runId == "run-1"

        api.state.records = moved_on(first, updated=15, added=25, day=2)
        reference_runs = run(pipeline, reference, "run-2")

        back = run_task("restore", replace(ctx, warehouse=restored), made.backup.id)
        assert back.ok, back.error
        assert cursors(restored)[0][2] == "2026-01-01T03:20:00.000000Z"  # the backup's cursor
        restored_runs = run(pipeline, restored, "run-2")

    # The run after the restore loaded only what changed, as the uninterrupted one did.
    loaded = restored_runs[0].tables["raw.customers"].loaded
    assert loaded == reference_runs[0].tables["raw.customers"].loaded == 40
    assert differences(restored, reference, skip_schemas=("_duckherd",)) == {}
    assert cursors(restored) == cursors(reference)
    assert count(restored, "marts.customer_analytics") == 225


def one_run(tmp_path: Path) -> TaskContext:
    """A warehouse after one ingest of 20 customers, and the backup task's context for it."""
    with FakeApi([customer(number, day=1) for number in range(1, 21)]) as api:
        pipeline = shop(api.url, transform=False, backup=BACKUP)
        warehouse = tmp_path / "warehouse.duckdb"
        run(pipeline, warehouse, "run-1")
    return TaskContext(pipeline=pipeline, warehouse=warehouse, backup_dir=tmp_path / "backups")


def test_backups_beyond_keep_are_deleted_and_the_listing_is_newest_first(tmp_path: Path) -> None:
    ctx = one_run(tmp_path)
    made = [run_task("backup", ctx) for _ in range(3)]
    assert all(summary.ok for summary in made)
    ids = [summary.backup.id for summary in made if summary.backup]
    assert made[-1].pruned == [ids[0]]
    assert [record.id for record in made[-1].backups] == [ids[2], ids[1]]
    folder = tmp_path / "backups" / "default" / "shop"
    assert sorted(path.name for path in folder.iterdir()) == sorted(ids[1:])
    record = json.loads((folder / ids[2] / RECORD_FILE).read_text())
    assert record["sizeBytes"] == (folder / ids[2] / DATA_FILE).stat().st_size > 0
    assert record["runId"] == "run-1" and record["location"] == str(folder / ids[2])


def test_a_damaged_backup_is_refused_and_the_warehouse_stays(tmp_path: Path) -> None:
    ctx = one_run(tmp_path)
    warehouse = ctx.warehouse
    made = run_task("backup", ctx)
    assert made.backup is not None
    data = Path(made.backup.location) / DATA_FILE
    with data.open("r+b") as handle:
        handle.seek(data.stat().st_size // 2)
        handle.write(b"\0garbage\0")
    before = warehouse.read_bytes()
    refused = run_task("restore", ctx, made.backup.id)
    assert not refused.ok
    assert refused.error == f"backup {made.backup.id} is damaged: its checksum does not match"
    assert warehouse.read_bytes() == before
    missing = run_task("restore", ctx, "20990101t000000-000000")
    assert missing.error is not None and "not found" in missing.error


def test_the_backup_waits_for_a_stage_holding_the_warehouse(tmp_path: Path) -> None:
    """The snapshot is taken under the writer's lock: while a stage holds the file, the
    backup waits, then copies what the stage committed."""
    ctx = one_run(tmp_path)
    warehouse = ctx.warehouse
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time\n"
            f"c = duckdb.connect({str(warehouse)!r})\n"
            "c.execute('INSERT INTO raw.customers (customer_id) VALUES (9999)')\n"
            "print('held', flush=True)\n"
            "time.sleep(3)\n"
            "c.close()\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    made = run_task("backup", ctx)
    assert holder.wait(timeout=60) == 0
    assert made.ok and made.backup is not None
    copy = Path(made.backup.location) / DATA_FILE
    with duckdb.connect(str(copy), read_only=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM raw.customers WHERE customer_id = 9999"
        ).fetchone()
    assert row == (1,)


def test_the_cli_backs_up_lists_and_restores(tmp_path: Path) -> None:
    with FakeApi([customer(number, day=1) for number in range(1, 21)]) as api:
        pipeline = shop(api.url, transform=False, backup=BACKUP)
        warehouse = tmp_path / ".warehouse" / "shop.duckdb"
        warehouse.parent.mkdir()
        run(pipeline, warehouse, "run-1")
    manifest = tmp_path / "pipeline.yaml"
    manifest.write_text(pipeline.model_dump_json(by_alias=True, exclude_none=True))
    duckherd = str(Path(sys.executable).with_name("duckherd"))

    def cli(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [duckherd, *arguments], capture_output=True, text=True, cwd=tmp_path, check=False
        )

    made = cli("backup", str(manifest))
    assert made.returncode == 0, made.stdout + made.stderr
    assert "run-1" in made.stdout  # the listing after the backup: its newest run
    warehouse.unlink()
    without = tmp_path / "without-backup.yaml"
    without.write_text(
        pipeline.model_copy(
            update={"spec": pipeline.spec.model_copy(update={"backup": None})}
        ).model_dump_json(by_alias=True, exclude_none=True)
    )
    refused = cli("restore", str(without), "latest")
    assert refused.returncode == 2
    assert refused.stdout.strip() == f"error: {without}: spec.backup is not set"
    assert "Traceback" not in refused.stderr
    back = cli("restore", str(manifest), "latest")
    assert back.returncode == 0, back.stdout + back.stderr
    assert count(warehouse, "raw.customers") == 20
