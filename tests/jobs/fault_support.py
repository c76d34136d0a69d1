"""The fault matrix's world: moving sources, a pipeline over them, runs, and what to compare.

A pipeline reads three real sources — a paged JSON API (FakeApi on loopback, customers merged
on their id, incremental on `updated_at`), a PostgreSQL table (orders appended, incremental on
`order_id`: a cursor out of step with the data shows as lost or duplicated orders) and a CSV
file downloaded over HTTP (regions, replaced) — builds three dbt models, checks them, and
publishes a mart to real Redis and PostgreSQL.

The sources move from version 1 to version 2 once per session. The reference pipeline runs
uninterrupted: run 1 on version 1 (the OLD state), run 2 on version 2 (the NEW state). Each
fault case starts from a copy of the OLD warehouse with OLD published to its own targets,
runs run 2 with one stage process stopped at a named point (`duckherd_jobs.fault_points`)
and SIGKILLed (or a server restarted under it), checks what the kill left, then runs run 3
uninterrupted and compares everything with NEW.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import psycopg2
import pytest
import redis as redis_client
import yaml

from duckherd.api import STAGES, DataPipeline
from duckherd.summary import StageSummary
from duckherd_jobs.context import StageContext
from duckherd_jobs.fault_points import ENV_PAUSE_AT, ENV_PAUSE_DIR
from duckherd_jobs.runner import run_stage
from tests import pipelines
from tests.jobs.ingest_support import FakeApi
from tests.services import PostgresServer, RedisServer

VENV_BIN = Path(sys.executable).parent
SOURCE_SCHEMA = "fault_source"
MART = "marts.customer_orders"
PAUSE_TIMEOUT = 300.0  # generous: a loaded machine imports dbt and GX slowly
# Columns every run stamps anew: not part of what a table holds.
RUN_COLUMNS = ("_loaded_at", "_run_id")

DBT_PROJECT = {
    "dbt_project.yml": """
name: faults
version: "1.0.0"
config-version: 2
profile: duckherd
model-paths: ["models"]
macro-paths: ["macros"]
models:
  faults:
    staging: {+materialized: view, +schema: staging}
    marts: {+materialized: table, +schema: marts}
""",
    "macros/generate_schema_name.sql": """
{% macro generate_schema_name(custom_schema_name, node) -%}
{%- if custom_schema_name is none -%}{{ target.schema }}
{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
""",
    "models/staging/_sources.yml": """
version: 2
sources:
  - name: raw
    schema: raw
    tables: [{name: customers}, {name: orders}, {name: regions}]
""",
    "models/staging/stg_customers.sql": """
select id as customer_id, name, revenue, updated_at from {{ source('raw', 'customers') }}
""",
    "models/marts/customer_orders.sql": """
select c.customer_id, c.name, c.revenue, count(o.order_id) as orders,
       coalesce(sum(o.amount), 0) as amount
from {{ ref('stg_customers') }} as c
left join {{ source('raw', 'orders') }} as o using (customer_id)
group by all
""",
    "models/marts/order_totals.sql": """
select (select count(*) from {{ ref('customer_orders') }}) as customers,
       (select count(*) from {{ source('raw', 'orders') }}) as orders,
       (select count(*) from {{ source('raw', 'regions') }}) as regions
""",
}


def write_dbt_project(directory: Path) -> Path:
    for name, text in DBT_PROJECT.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.lstrip())
    return directory


# ---------------------------------------------------------------------- the moving sources


def _customer(number: int, updated_at: str) -> dict[str, Any]:
    return {
        "id": number,
        "name": f"customer {number}",
        "revenue": number * 10.0,
        "updated_at": updated_at,
    }


def customer_records(version: int) -> list[dict[str, Any]]:
    """30 customers; version 2 adds 10 and changes the first 5 (a later `updated_at`)."""
    records = [_customer(i, f"2026-01-01T00:00:{i:02d}Z") for i in range(1, 31)]
    if version >= 2:
        for record in records[:5]:
            record.update(revenue=float(record["revenue"]) + 1, updated_at="2026-01-02T00:00:00Z")
        records += [_customer(i, f"2026-01-02T00:01:{i:02d}Z") for i in range(31, 41)]
    return records


def order_rows(version: int) -> list[tuple[int, int, float]]:
    """Orders 1..50; version 2 appends 51..80 (order id is the cursor)."""
    last = 80 if version >= 2 else 50
    return [(i, 1 + i % 40, float(i)) for i in range(1, last + 1)]


def region_csv(version: int) -> str:
    regions = ["north", "south", "east"] + (["west"] if version >= 2 else [])
    return "region,rank\n" + "".join(f"{r},{i}\n" for i, r in enumerate(regions, 1))


@dataclass
class Sources:
    api: FakeApi
    postgres: PostgresServer
    files: Path
    files_url: str

    def set_version(self, version: int) -> None:
        with self.api.state.lock:
            self.api.state.records = customer_records(version)
        (self.files / "regions.csv").write_text(region_csv(version))
        with psycopg2.connect(self.postgres.dsn()) as connection, connection.cursor() as cursor:
            cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {SOURCE_SCHEMA}")
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {SOURCE_SCHEMA}.orders "
                "(order_id integer PRIMARY KEY, customer_id integer, amount double precision)"
            )
            cursor.execute(f"TRUNCATE {SOURCE_SCHEMA}.orders")
            cursor.executemany(
                f"INSERT INTO {SOURCE_SCHEMA}.orders VALUES (%s, %s, %s)", order_rows(version)
            )


# ---------------------------------------------------------------------- the pipeline


@dataclass(frozen=True)
class Case:
    """One pipeline (own name, own warehouse, own published targets) in the session dir."""

    name: str
    directory: Path
    sources: Sources
    redis: RedisServer
    project: Path

    @property
    def appdb(self) -> PostgresServer:
        """The publish target: the sources' server."""
        return self.sources.postgres

    @property
    def warehouse(self) -> Path:
        return self.directory / f"{self.name}.duckdb"

    @property
    def pg_schema(self) -> str:
        return self.name.replace("-", "_")

    @property
    def redis_prefix(self) -> str:
        return f"duckherd:default:{self.name}:{MART}"

    def manifest(self) -> dict[str, Any]:
        dsn_ref = {"name": "source", "key": "dsn"}
        cache_ref, appdb_ref = {"name": "cache", "key": "url"}, {"name": "appdb", "key": "dsn"}
        return pipelines.manifest(
            self.name,
            sources=[
                {
                    "name": "customers",
                    "primaryKey": ["id"],
                    "writeDisposition": "merge",
                    "incremental": {"cursorField": "updated_at"},
                    "http": {
                        "url": self.sources.api.url,
                        "recordsPath": "data",
                        "incrementalParam": "updated_since",
                        "pagination": {"type": "page", "pageSize": 10, "totalPath": "total"},
                        "timeoutSeconds": 10,
                        "maxRetries": 3,
                    },
                },
                {
                    "name": "orders",
                    "writeDisposition": "append",
                    "incremental": {"cursorField": "order_id"},
                    "postgres": {"dsnSecretRef": dsn_ref, "table": f"{SOURCE_SCHEMA}.orders"},
                },
                {
                    "name": "regions",
                    "writeDisposition": "replace",
                    "file": {"url": f"{self.sources.files_url}/regions.csv", "format": "csv"},
                },
            ],
            transform={"dbt": {"project": {"path": str(self.project)}}},
            quality={
                "checks": [
                    {
                        "table": MART,
                        "expectation": "expect_column_values_to_be_unique",
                        "kwargs": {"column": "customer_id"},
                    }
                ]
            },
            publish=[
                {
                    "table": MART,
                    "redis": {"urlSecretRef": cache_ref, "keyColumns": ["customer_id"]},
                },
                {
                    "table": MART,
                    "postgres": {"dsnSecretRef": appdb_ref, "schema": self.pg_schema},
                },
            ],
        )

    def pipeline(self) -> DataPipeline:
        return DataPipeline.model_validate(self.manifest())

    def env(self) -> dict[str, str]:
        return {
            "DUCKHERD_SECRET_SOURCE_DSN": self.sources.postgres.dsn(),
            "DUCKHERD_SECRET_CACHE_URL": self.redis.url(),
            "DUCKHERD_SECRET_APPDB_DSN": self.appdb.dsn(),
            "DUCKHERD_DBT_LOG_LEVEL": "none",
        }

    def run(self, stage: str, run_id: str) -> StageSummary:
        """One stage in this process, as local mode runs it."""
        ctx = StageContext(
            pipeline=self.pipeline(),
            warehouse=self.warehouse,
            run_id=run_id,
            env=self.env(),
            lock_timeout_seconds=120,
            manifest_dir=self.directory,
        )
        return run_stage(stage, ctx)  # type: ignore[arg-type]

    def run_all(self, run_id: str, stages: tuple[str, ...] = STAGES) -> dict[str, StageSummary]:
        summaries = {}
        for stage in stages:
            summaries[stage] = summary = self.run(stage, run_id)
            assert summary.ok, f"{self.name} {run_id} {stage}: {summary.error}"
        return summaries

    def spawn(self, stage: str, run_id: str, pause_at: str, pause_dir: Path) -> StageProcess:
        """The stage as a pod runs it (`duckherd job <stage>`), told to stop at `pause_at`."""
        spec = self.directory / f"{self.name}.yaml"
        spec.write_text(yaml.safe_dump(self.manifest()))
        pause_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **self.env(),
            ENV_PAUSE_AT: pause_at,
            ENV_PAUSE_DIR: str(pause_dir),
        }
        process = subprocess.Popen(
            [
                str(VENV_BIN / "duckherd"),
                "job",
                stage,
                "--spec",
                str(spec),
                "--warehouse",
                str(self.warehouse),
                "--termination-log",
                str(self.directory / f"{self.name}.{stage}.termination-log"),
                "--run-id",
                run_id,
            ],
            env=env,
            cwd=self.directory,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        return StageProcess(process, pause_dir, pause_at)


@dataclass
class StageProcess:
    process: subprocess.Popen[str]
    pause_dir: Path
    point: str

    def wait_paused(self) -> None:
        marker = self.pause_dir / f"{self.point}.paused"
        deadline = time.monotonic() + PAUSE_TIMEOUT
        while not marker.exists():
            if self.process.poll() is not None:
                output = self.process.stdout.read() if self.process.stdout else ""
                raise AssertionError(
                    f"the stage exited ({self.process.returncode}) before reaching "
                    f"{self.point}:\n{output[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"the stage did not reach {self.point} in {PAUSE_TIMEOUT}s")
            time.sleep(0.05)
        assert int(marker.read_text()) == self.process.pid

    def kill(self) -> None:
        """SIGKILL: no handler, no cleanup, no flush runs."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=60)
        assert self.process.returncode == -signal.SIGKILL
        if self.process.stdout:
            self.process.stdout.close()

    def release(self) -> int:
        (self.pause_dir / f"{self.point}.release").touch()
        self.process.wait(timeout=PAUSE_TIMEOUT)
        return self.process.returncode


# ---------------------------------------------------------------------- what a state holds


def relation_rows(connection: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[Any, ...]]:
    columns = [row[0] for row in connection.execute(f"DESCRIBE {relation}").fetchall()]
    kept = ", ".join(f'"{c}"' for c in columns if c not in RUN_COLUMNS)
    return connection.execute(f"SELECT {kept} FROM {relation} ORDER BY ALL").fetchall()


@dataclass(frozen=True)
class WarehouseState:
    tables: dict[str, list[tuple[Any, ...]]]
    cursors: dict[str, str]

    def version_of(self, old: WarehouseState, new: WarehouseState, prefix: str) -> str:
        """'old' or 'new' when the tables under `prefix` equal one of them, else 'MIXED'."""
        mine = {k: v for k, v in self.tables.items() if k.startswith(prefix)}
        for label, reference in (("old", old), ("new", new)):
            if mine == {k: v for k, v in reference.tables.items() if k.startswith(prefix)}:
                return label
        return "MIXED"


def warehouse_state(warehouse: Path) -> WarehouseState:
    """Opens the file read-write first: a warehouse that cannot be opened fails here."""
    with duckdb.connect(str(warehouse)) as connection:
        connection.execute("CHECKPOINT")
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        names = connection.execute(
            "SELECT schema_name || '.' || table_name FROM duckdb_tables() "
            "WHERE schema_name IN ('raw', 'marts') ORDER BY 1"
        ).fetchall()
        tables = {name: relation_rows(connection, name) for (name,) in names}
        cursors = dict(
            connection.execute("SELECT source, cursor_value FROM _duckherd.state").fetchall()
        )
    return WarehouseState(tables, {str(k): str(v) for k, v in cursors.items()})


def consistency_problems(warehouse: Path) -> list[str]:
    """A partial or duplicated load, or a cursor out of step with the data."""
    problems = []
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        if connection.execute(
            "SELECT count(*) FROM duckdb_tables() "
            "WHERE schema_name = 'raw' AND table_name = 'orders'"
        ).fetchone() == (1,):
            dupes = connection.execute(
                "SELECT count(*) - count(DISTINCT order_id) FROM raw.orders"
            ).fetchone()
            if dupes and dupes[0]:
                problems.append(f"raw.orders holds {dupes[0]} duplicated orders")
            for source, column in (("orders", "order_id"), ("customers", "updated_at")):
                table = f"raw.{source}"
                top = connection.execute(
                    f"SELECT CAST(max({column}) AS VARCHAR) FROM {table}"
                ).fetchone()
                cursor = connection.execute(
                    "SELECT cursor_value FROM _duckherd.state WHERE source = ?", [source]
                ).fetchone()
                if normal_cursor(top[0] if top else None) != normal_cursor(
                    cursor[0] if cursor else None
                ):
                    problems.append(f"cursor of {source} is {cursor} but {table} holds up to {top}")
        dupes = connection.execute(
            "SELECT count(*) - count(DISTINCT id) FROM raw.customers"
        ).fetchone()
        if dupes and dupes[0]:
            problems.append(f"raw.customers holds {dupes[0]} duplicated customers")
    return problems


def normal_cursor(value: Any) -> str | None:
    """Cursor text and a column's max as text, in one form (timestamps: no zone suffix)."""
    if value is None:
        return None
    text = str(value).replace("T", " ").removesuffix("Z").removesuffix("+00")
    return text.removesuffix(".000000")


@dataclass(frozen=True)
class PublishedState:
    redis_run: str | None
    redis_rows: dict[str, dict[str, Any]]
    postgres_run: str | None
    postgres_rows: list[tuple[Any, ...]]


def published_state(case: Case) -> PublishedState:
    client = redis_client.Redis.from_url(case.redis.url(), decode_responses=True)
    try:
        meta_text = client.get(f"{case.redis_prefix}:meta")
        rows = client.hgetall(f"{case.redis_prefix}:rows")
    finally:
        client.close()
    meta = json.loads(meta_text) if meta_text else {}
    documents = {str(key): json.loads(value) for key, value in rows.items()}
    table = f"{case.pg_schema}.customer_orders"
    with psycopg2.connect(case.appdb.dsn()) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", [table])
        comment = _one(cursor.fetchone())
        pg_rows: list[tuple[Any, ...]] = []
        if comment is not None:
            cursor.execute(f"SELECT customer_id, orders, amount FROM {table} ORDER BY 1")
            pg_rows = cursor.fetchall()
    pg_run = comment.split("run ")[1].split(",")[0] if comment else None
    return PublishedState(meta.get("runId"), documents, pg_run, pg_rows)


def postgres_leftovers(case: Case, deadline: float = 60.0) -> list[str]:
    """Staging or retired tables left in the case's schema once the server has noticed that
    the killed publisher's connection is gone (its transaction rolled back)."""
    end = time.monotonic() + deadline
    while True:
        with psycopg2.connect(case.appdb.dsn()) as connection, connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'duckherd-publish'"
            )
            busy = _one(cursor.fetchone())
            cursor.execute(
                "SELECT tablename FROM pg_tables "
                "WHERE schemaname = %s AND tablename LIKE '_duckherd%%'",
                [case.pg_schema],
            )
            leftovers = [row[0] for row in cursor.fetchall()]
        if not busy or time.monotonic() > end:
            return leftovers
        time.sleep(0.1)


@dataclass
class Outcome:
    """One row of the fault table."""

    fault: str
    after: dict[str, str] = field(default_factory=dict)
    next_run: str = ""
    rows_lost: int = 0
    rows_duplicated: int = 0
    notes: list[str] = field(default_factory=list)


def lost_and_duplicated(
    actual: Mapping[str, list[tuple[Any, ...]]], expected: Mapping[str, list[tuple[Any, ...]]]
) -> tuple[int, int]:
    """Rows of `expected` missing from `actual`, and rows of `actual` beyond `expected`,
    table by table (multisets)."""
    lost = duplicated = 0
    for table, rows in expected.items():
        have = list(actual.get(table, []))
        for row in rows:
            if row in have:
                have.remove(row)
            else:
                lost += 1
        duplicated += len(have)
    return lost, duplicated


def _one(row: tuple[Any, ...] | None) -> Any:
    assert row is not None
    return row[0]


def copy_warehouse(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)


# ---------------------------------------------------------------------- a full volume


@contextmanager
def small_volume(mountpoint: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size`: a volume that really fills up. Needs root (CI runs as root)."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("mounting a small volume needs root")
        pytest.skip("mounting a small volume needs root")
    mountpoint.mkdir(parents=True, exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)]
    subprocess.run(mount, check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(volume: Path) -> Path:
    """Fill the volume to the last byte; returns the filler (delete it to 'grow' the volume)."""
    filler = volume / "filler"
    with filler.open("wb", buffering=0) as file:
        for size in (1 << 20, 1 << 12, 1):
            block = b"\0" * size
            try:
                while True:
                    file.write(block)
            except OSError:
                continue
    return filler
