"""The Argo CD health check (charts/duckherd/argocd/health.lua), tested like Argo CD's own:
health_test.yaml cases run in gopher-lua by a Go test. The cases are derived from the status
code (tests/unit/argocd_cases.py); a drift test keeps the checked-in fixture in step."""

from __future__ import annotations

from collections import Counter

from tests.tools import REPO_ROOT, go_run
from tests.unit.argocd_cases import (
    CHECK_DIR,
    DATA_HEALTH,
    DERIVED_DIR,
    derived_objects,
    expected_health,
    fixture_files,
)


def test_the_checked_in_cases_are_what_the_status_code_produces() -> None:
    files = fixture_files()
    for relative, content in files.items():
        path = CHECK_DIR / relative
        assert path.is_file() and path.read_text() == content, (
            f"{relative} drifted: run `python -m tests.unit.argocd_cases --write`"
        )
    on_disk = {f"{DERIVED_DIR}/{p.name}" for p in (CHECK_DIR / DERIVED_DIR).glob("*.yaml")}
    assert on_disk <= set(files), f"stale cases: {sorted(on_disk - set(files))}"


def test_the_cases_reach_every_health_and_every_data_reason() -> None:
    pipelines = list(derived_objects().values())
    healths = Counter(expected_health(p)["status"] for p in pipelines)
    assert set(healths) == {"Healthy", "Progressing", "Degraded", "Suspended"}, healths
    reasons = {
        c["reason"] if c["status"] != "True" else "True"
        for p in pipelines
        for c in p["status"].get("conditions", [])
        if c["type"] == "DataReady"
    }
    assert reasons == set(DATA_HEALTH), "the contract must name every DataReady reason"


def test_health_lua_gives_every_case_its_expected_health() -> None:
    result = go_run(REPO_ROOT / "hack" / "argocd-health", "test", "-count=1", "./...")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok" in result.stdout
