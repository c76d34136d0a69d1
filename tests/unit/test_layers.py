"""Layering, with no exemption.

- `duckherd` (API, status, summary, contract) is shared: it imports neither side.
- `duckherd_operator` imports nothing of the jobs, nor what only the jobs need (DuckDB, dbt,
  Great Expectations, rich, tenacity).
- `duckherd_jobs` imports nothing of the operator (nor Kopf).
- `duckherd_cli` is the entry point of both; it reaches each side only inside the command
  that needs it, so the operator process loads nothing of the jobs (checked at run time).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
JOBS_ONLY = {"duckherd_jobs", "duckdb", "great_expectations", "dbt", "rich", "tenacity"}
OPERATOR_ONLY = {"duckherd_operator", "kopf", "prometheus_client"}


def _imports(package: Path, *, top_level_only: bool = False) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text())
        nodes = tree.body if top_level_only else ast.walk(tree)
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update((str(path), alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add((str(path), node.module))
    return found


def _offenders(package: Path, forbidden: set[str], **options: bool) -> list[tuple[str, str]]:
    return sorted((p, m) for p, m in _imports(package, **options) if m.split(".")[0] in forbidden)


def test_jobs_never_import_the_operator() -> None:
    assert _offenders(ROOT / "jobs", OPERATOR_ONLY) == []


def test_operator_never_imports_jobs_or_what_only_jobs_need() -> None:
    assert _offenders(ROOT / "operator" / "duckherd_operator", JOBS_ONLY) == []


def test_the_neutral_package_imports_neither() -> None:
    assert _offenders(ROOT / "operator" / "duckherd", JOBS_ONLY | OPERATOR_ONLY) == []


def test_the_cli_reaches_either_side_only_inside_a_command() -> None:
    cli = ROOT / "operator" / "duckherd_cli"
    assert _offenders(cli, JOBS_ONLY | OPERATOR_ONLY, top_level_only=True) == []


# Runs the real `duckherd operator` command up to Kopf's loop, which is replaced by a report of
# what the process has imported by then: every handler and client, nothing of the jobs.
_OPERATOR_PROCESS = """
import json, sys
import kopf
kopf.run = lambda **_: print(json.dumps(sorted(sys.modules)))
from duckherd_cli.main import app
app(["operator", "--metrics-port", "0"], standalone_mode=False)
"""


def test_the_operator_process_loads_nothing_of_the_jobs() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _OPERATOR_PROCESS],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    top_level = {name.split(".")[0] for name in modules}
    assert "duckherd_operator.handlers" in modules  # the operator really was loaded
    # httpx's package imports its own command line, which loads rich when rich is installed;
    # this goes with the hand-written httpx client (kube.py), which issue 9 replaces.
    imported_by_httpx = {"rich"} if "httpx" in top_level else set()
    assert top_level & JOBS_ONLY - imported_by_httpx == set()
