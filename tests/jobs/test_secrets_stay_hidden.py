"""No stage lets a credential out, whatever shape it has and whoever echoes it.

Each stage is driven into its error path with real components that echo credential-shaped
text back: an API that quotes the rejected token, PostgreSQL quoting a value it cannot cast or
store, DuckDB quoting a value in a conversion error (inside dbt and inside the check stage),
an HTTP download whose URL carries a credential, redis-py quoting a socket path. The text is a
libpq DSN, a URL with a password, or a bare `password=` fragment. The stage runs as a pod runs
it (`duckherd job <stage>`: `run_stage_cli`) and the password must appear nowhere: not in the
summary (termination log), not in the status the operator computes from it, not in the logs
(records and captured stdout/stderr) and not in `_duckherd.runs`. Every case also asserts
that the echo happened (the error holds `***`), so none passes because nothing was said.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import duckdb
import psycopg2
import pytest
import yaml

from duckherd.api import DataPipelineSpec, DataPipelineStatus, Stage
from duckherd.status import RunObservation, StageObservation, compute_status
from duckherd.summary import StageSummary, decode
from duckherd_jobs.demo_source import send_json
from duckherd_jobs.redaction import REDACTED
from duckherd_jobs.runner import run_stage_cli
from duckherd_jobs.sql import sql_string
from tests import pipelines
from tests.jobs.ingest_support import served_directory
from tests.services import PostgresServer

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[2]

# shape -> (the credential-shaped text, the password inside it)
SHAPES: dict[str, tuple[str, str]] = {
    "dsn": ("host=db.internal port=5432 user=duck password=Dsn-pw-7Qz dbname=shop", "Dsn-pw-7Qz"),
    "url": ("postgresql://duck:Url-pw-8Rz@db.internal:5432/shop", "Url-pw-8Rz"),
    "fragment": ("password=Frag-pw-9Sz", "Frag-pw-9Sz"),
}


@dataclass
class Case:
    """One stage run: its spec, the env its pod would get, the warehouse it starts from."""

    stage: Stage
    spec: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    warehouse_sql: str = ""


@dataclass
class Services:
    postgres: PostgresServer
    tmp_path: Path
    enter: Callable[[Any], Any]  # ExitStack.enter_context: servers live for the test


def _spec(**parts: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "schedule": pipelines.DAILY,
        "sources": [{"name": "orders", "file": {"path": "orders.csv", "format": "csv"}}],
    }
    spec.update(parts)
    return spec


@contextmanager
def _api_quoting_the_token() -> Iterator[str]:
    """An API that refuses every request and quotes the credential it was sent (some do)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

        def do_GET(self) -> None:
            quoted = json.dumps({"error": f"rejected: {self.headers.get('Authorization')}"})
            send_json(self, 401, quoted.encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/orders"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def ingest_http(text: str, services: Services) -> Case:
    url = services.enter(_api_quoting_the_token())
    source = {
        "name": "orders",
        "http": {
            "url": url,
            "recordsPath": "data",
            "auth": {"type": "bearer", "secretRef": {"name": "api", "key": "token"}},
        },
    }
    return Case("ingest", _spec(sources=[source]), {"DUCKHERD_SECRET_API_TOKEN": text})


def ingest_postgres(text: str, services: Services) -> Case:
    table = f"leaky_{uuid.uuid4().hex[:8]}"
    with psycopg2.connect(services.postgres.dsn()) as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {table} (v text)")
        cursor.execute(f"INSERT INTO {table} VALUES (%s)", (text,))
    connection.close()
    source = {
        "name": "orders",
        "postgres": {
            "dsnSecretRef": {"name": "srcdb", "key": "dsn"},
            "query": f"SELECT v::integer AS v FROM {table}",  # PostgreSQL quotes the value
        },
    }
    env = {"DUCKHERD_SECRET_SRCDB_DSN": services.postgres.dsn()}
    return Case("ingest", _spec(sources=[source]), env)


def ingest_file(text: str, services: Services) -> Case:
    base = services.enter(served_directory(services.tmp_path))
    # A download link that carries the credential in its query (the file does not exist).
    url = f"{base}/exports/orders.csv?{text.replace(' ', '&')}"
    return Case(
        "ingest", _spec(sources=[{"name": "orders", "file": {"url": url, "format": "csv"}}])
    )


def transform(text: str, services: Services) -> Case:
    project = services.tmp_path / "dbt"
    shutil.copytree(REPO / "dbt", project, ignore=shutil.ignore_patterns("target", "logs"))
    # A model that uses a secret from the pod's env; DuckDB quotes it when the cast fails.
    (project / "models" / "marts" / "leaky.sql").write_text(
        "select cast('{{ env_var(\"LEGACY_DSN\") }}' as integer) as v\n"
    )
    dbt = {"project": {"path": str(project)}, "select": ["leaky"]}
    secret_env = {
        "name": "LEGACY_DSN",
        "valueFrom": {"secretKeyRef": {"name": "legacy", "key": "dsn"}},
    }
    spec = _spec(transform={"dbt": dbt}, pod={"env": [secret_env]})
    return Case("transform", spec, {"LEGACY_DSN": text})


def check(text: str, services: Services) -> Case:
    leaky_check = {
        "table": "leaky",
        "expectation": "expect_column_values_to_be_in_set",
        "kwargs": {"column": "v", "value_set": [1, 2]},  # DuckDB quotes v when it casts
    }
    sql = f"CREATE SCHEMA marts; CREATE TABLE marts.leaky AS SELECT {sql_string(text)} AS v"
    return Case("check", _spec(quality={"checks": [leaky_check]}), warehouse_sql=sql)


def publish_postgres(text: str, services: Services) -> Case:
    target = {
        "dsnSecretRef": {"name": "appdb", "key": "dsn"},
        "table": f"leaky_{uuid.uuid4().hex[:8]}",
    }
    # PostgreSQL refuses the NUL inside the JSON and quotes the JSON in its error context.
    sql = (
        "CREATE SCHEMA marts; CREATE TABLE marts.leaky AS "
        f"SELECT 1 AS id, [{sql_string(text)} || chr(0)] AS v"
    )
    env = {"DUCKHERD_SECRET_APPDB_DSN": services.postgres.dsn()}
    spec = _spec(publish=[{"table": "marts.leaky", "postgres": target}])
    return Case("publish", spec, env, sql)


def publish_redis(text: str, services: Services) -> Case:
    target = {"urlSecretRef": {"name": "cache", "key": "url"}, "keyColumns": ["id"]}
    sql = "CREATE SCHEMA marts; CREATE TABLE marts.leaky AS SELECT 1 AS id, 'x' AS v"
    # redis-py quotes the socket path it could not open.
    env = {"DUCKHERD_SECRET_CACHE_URL": f"unix:///nonexistent/{text}"}
    return Case("publish", _spec(publish=[{"table": "marts.leaky", "redis": target}]), env, sql)


PATHS: dict[str, Callable[[str, Services], Case]] = {
    "ingest-http": ingest_http,
    "ingest-postgres": ingest_postgres,
    "ingest-file": ingest_file,
    "transform": transform,
    "check": check,
    "publish-postgres": publish_postgres,
    "publish-redis": publish_redis,
}


def _status_json(spec: dict[str, Any], summary: StageSummary) -> str:
    """The status the operator computes from the stage's termination message."""
    observation = StageObservation(
        stage=summary.stage,
        job="shop-run-1",
        state="Failed",
        start_time=summary.startedAt,
        completion_time=summary.finishedAt,
        summary=summary,
    )
    status = compute_status(
        spec=DataPipelineSpec.model_validate(spec),
        generation=1,
        previous=DataPipelineStatus(),
        run=RunObservation(run_id="run-1", trigger="Manual", stages=(observation,)),
        now=datetime.now(UTC),
    )
    return status.model_dump_json()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("path", PATHS)
def test_no_stage_lets_a_credential_out(
    path: str,
    shape: str,
    tmp_path: Path,
    postgres: PostgresServer,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    text, password = SHAPES[shape]
    duckherd_logs = logging.getLogger("duckherd")
    stack = ExitStack()
    stack.callback(duckherd_logs.setLevel, duckherd_logs.level)  # verbose raises it
    with pytest.MonkeyPatch.context() as patch, stack:
        case = PATHS[path](text, Services(postgres, tmp_path, stack.enter_context))
        manifest = tmp_path / "pipeline.yaml"
        manifest.write_text(yaml.safe_dump(pipelines.manifest("shop", "analytics", **case.spec)))
        warehouse = tmp_path / "warehouse.duckdb"
        if case.warehouse_sql:
            with duckdb.connect(str(warehouse)) as connection:
                connection.execute(case.warehouse_sql)
        for name, value in case.env.items():
            patch.setenv(name, value)
        termination_log = tmp_path / "termination-log"
        with caplog.at_level("DEBUG"):
            exit_code = run_stage_cli(
                case.stage,
                spec_path=manifest,
                warehouse=warehouse,
                termination_log=termination_log,
                run_id="run-1",
                verbose=True,  # tracebacks too, as `--verbose` shows them
            )
    captured = capfd.readouterr()

    summary = decode(termination_log.read_bytes(), case.stage)
    assert exit_code == 1 and not summary.ok
    assert REDACTED in (summary.error or ""), f"the component did not echo: {summary.error}"
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        runs = [
            str(row[0])
            for row in connection.execute("SELECT summary FROM _duckherd.runs").fetchall()
        ]
    assert runs
    places = {
        "summary": termination_log.read_text(),
        "status": _status_json(case.spec, summary),
        "log records": caplog.text,
        "stdout": captured.out,
        "stderr": captured.err,
        "_duckherd.runs": "\n".join(runs),
    }
    for place, content in places.items():
        assert password not in content, f"{password} in {place}"
        assert text not in content, f"{text} in {place}"
