"""External tools the tests use: a missing one fails under CI (a skip would hide the checks)
and skips elsewhere; the Go programs under hack/ are built from the Go module proxy."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
GO_TOOLS_BIN = REPO_ROOT / ".cache" / "bin"


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing_tool(message: str) -> NoReturn:
    if under_ci():
        pytest.fail(f"{message}: CI must have it, a skip would hide the checks")
    pytest.skip(message)


def promtool() -> str:
    """Prometheus's promtool (Debian package `prometheus`; hack/setup.sh installs it)."""
    found = shutil.which("promtool")
    if found is None:
        missing_tool("no promtool (Debian package `prometheus`; hack/setup.sh installs it)")
    return found


def promtool_lint_metrics(exposition: str) -> tuple[int, str]:
    """`promtool check metrics` on a /metrics exposition: its exit code and what it reports
    (nothing, when the names, types, units and help texts follow Prometheus's conventions)."""
    checked = subprocess.run(
        [promtool(), "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return checked.returncode, checked.stdout + checked.stderr


def go() -> str:
    """The Go toolchain (PATH, $GO or /usr/local/go)."""
    found = os.environ.get("GO") or shutil.which("go")
    if not found and Path("/usr/local/go/bin/go").is_file():
        found = "/usr/local/go/bin/go"
    if not found:
        missing_tool("no Go toolchain (PATH, $GO or /usr/local/go/bin/go)")
    return found


def go_run(module: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """`go ARGS` in a module under hack/ (modules come from the module proxy on first use)."""
    return subprocess.run(
        [go(), *args], cwd=module, capture_output=True, text=True, timeout=timeout, check=False
    )


def go_tool(name: str) -> Path:
    """Build hack/NAME (its own go.mod) into .cache/bin/NAME; Go's build cache makes it cheap."""
    GO_TOOLS_BIN.mkdir(parents=True, exist_ok=True)
    binary = GO_TOOLS_BIN / name
    built = go_run(REPO_ROOT / "hack" / name, "build", "-o", str(binary), ".")
    assert built.returncode == 0, f"go build hack/{name} failed:\n{built.stderr}"
    return binary
