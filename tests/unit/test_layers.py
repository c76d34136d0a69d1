"""Layering: the jobs never import the operator, the operator never opens the warehouse."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(package: Path) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update((str(path), alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add((str(path), node.module))
    return found


def test_jobs_never_import_the_operator() -> None:
    bad = [(p, m) for p, m in _imports(ROOT / "jobs") if m.split(".")[0] == "duckherd_operator"]
    assert bad == []


def test_operator_never_imports_jobs_or_duckdb() -> None:
    forbidden = {"duckherd_jobs", "duckdb", "great_expectations", "dbt"}
    bad = [
        (p, m)
        for p, m in _imports(ROOT / "operator" / "duckherd_operator")
        if m.split(".")[0] in forbidden
    ]
    assert bad == []


def test_the_neutral_package_imports_neither() -> None:
    forbidden = {"duckherd_jobs", "duckherd_operator", "kopf", "duckdb"}
    bad = [
        (p, m)
        for p, m in _imports(ROOT / "operator" / "duckherd")
        if m.split(".")[0] in forbidden and not p.endswith("cli.py")
    ]
    assert bad == []
