"""`duckherd run` as a user meets it: the real command in a subprocess against a real HTTP
server on loopback (errors: one line, exit 1, tracebacks only for bugs or with --verbose),
and local mode's tables at 80 and 200 columns (key columns whole, what the warehouse holds)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from duckherd_jobs.local import run_local
from tests import pipelines
from tests.jobs.ingest_support import FakeApi, customers, http_source

DUCKHERD = Path(sys.executable).with_name("duckherd")
NAME = "auth-demo"
TOKEN = "right-token-4d1f"
SECRET_ENV = "DUCKHERD_SECRET_API_TOKEN"
AUTH = {"type": "bearer", "secretRef": {"name": "api", "key": "token"}}


def write_manifest(directory: Path, url: str) -> Path:
    manifest = pipelines.manifest(
        NAME, sources=[http_source("customers", url, http={"auth": AUTH})]
    )
    path = directory / "pipeline.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def duckherd(
    directory: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DUCKHERD_")}
    return subprocess.run(
        [str(DUCKHERD), *args],
        env={**environment, **(env or {})},
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def stage_pod(
    directory: Path, stage: str, manifest: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`duckherd job <stage>` as a stage pod runs it, its files in `directory`."""
    return duckherd(
        directory,
        "job",
        stage,
        "--spec",
        str(manifest),
        "--warehouse",
        str(directory / "w.duckdb"),
        "--termination-log",
        str(directory / "termination-log"),
        env=env,
    )


def secured_api() -> FakeApi:
    api = FakeApi(customers(15))
    api.state.required_headers["Authorization"] = f"Bearer {TOKEN}"
    return api


def test_a_source_answering_401_is_one_line_naming_source_and_status(tmp_path: Path) -> None:
    with secured_api() as api:
        manifest = write_manifest(tmp_path, api.url)
        result = duckherd(tmp_path, "run", str(manifest), env={SECRET_ENV: "wrong-token"})

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    reasons = [line for line in output.splitlines() if "HTTP 401" in line]
    assert reasons, output
    assert "source customers" in reasons[0]
    assert "wrong-token" not in output


def test_verbose_adds_the_traceback(tmp_path: Path) -> None:
    with secured_api() as api:
        manifest = write_manifest(tmp_path, api.url)
        result = duckherd(
            tmp_path, "run", str(manifest), "--verbose", env={SECRET_ENV: "wrong-token"}
        )

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    assert "IngestError" in result.stderr
    assert "HTTP 401" in result.stdout


def test_a_missing_secret_variable_is_one_line_naming_it(tmp_path: Path) -> None:
    with secured_api() as api:
        manifest = write_manifest(tmp_path, api.url)
        result = duckherd(tmp_path, "run", str(manifest))

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert any("secret api/token" in line and SECRET_ENV in line for line in output.splitlines())


def test_a_stage_pod_reports_a_user_error_in_one_line(tmp_path: Path) -> None:
    with secured_api() as api:
        manifest = write_manifest(tmp_path, api.url)
        result = stage_pod(tmp_path, "ingest", manifest, env={SECRET_ENV: "wrong-token"})

    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert "stage ingest failed: source customers" in result.stderr
    assert "HTTP 401" in (tmp_path / "termination-log").read_text()


BUGGY_STAGE = """
def run(ctx):
    return {}["a key that is not there"]
"""

RUN_WITH_A_BUG = """
import sys
from duckherd_jobs import runner
runner._STAGE_FUNCTIONS["ingest"] = "buggy_stage:run"
from duckherd_cli.main import app
app(["run", sys.argv[1]])
"""


def test_a_bug_shows_its_traceback(tmp_path: Path) -> None:
    (tmp_path / "buggy_stage.py").write_text(BUGGY_STAGE)
    manifest = write_manifest(tmp_path, "http://127.0.0.1:9/unused")
    result = subprocess.run(
        [sys.executable, "-c", RUN_WITH_A_BUG, str(manifest)],
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    assert "KeyError: 'a key that is not there'" in result.stdout


# ---------------------------------------------------------------------- local mode's tables


def render_run(manifest: Path, warehouse: Path, width: int) -> tuple[int, list[str]]:
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, force_terminal=False)
    code = run_local(manifest, warehouse=warehouse, console=console)
    return code, out.getvalue().splitlines()


def row(lines: list[str], *starts: str) -> str:
    matches = [line for line in lines if line.split()[:1] == [starts[0]] and starts[1] in line]
    assert len(matches) == 1, "\n".join(lines)
    return matches[0]


@pytest.mark.parametrize("width", [80, 200])
def test_a_long_failure_message_leaves_the_key_columns_whole(
    tmp_path: Path, width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse = tmp_path / "w.duckdb"
    with secured_api() as api:
        # The fake API ignores the path: a long one makes the error longer than the console.
        manifest = write_manifest(tmp_path, f"{api.url}/{'very-long-path-segment/' * 12}")
        monkeypatch.setenv(SECRET_ENV, TOKEN)
        first, _ = render_run(manifest, warehouse, width)
        monkeypatch.setenv(SECRET_ENV, "wrong-token")
        code, lines = render_run(manifest, warehouse, width)

    assert (first, code) == (0, 1)
    assert all(len(line) <= width for line in lines), "\n".join(lines)
    header = row(lines, "NAME", "SCHEDULE")
    for column in ("NAME", "SCHEDULE", "DATA", "LAST RUN", "ROWS", "FRESHNESS", "CHECKS"):
        assert column in header
    status = row(lines, NAME, "Failed")
    for value in ("0 6 * * *", "False", "Failed", "NoChecks"):
        assert value in status
    assert status.rstrip().endswith("…")  # the message is cut, not the columns
    stage = row(lines, "ingest", "Failed")
    assert stage.rstrip().endswith("…")
    # After the failed run the warehouse still holds what the first run loaded.
    assert row(lines, "raw.customers", "15").split()[:2] == ["raw.customers", "15"]
    # The whole message is there, above the tables (wrapped to the console).
    assert "HTTP401Unauthorized" in "".join("".join(lines).split())
