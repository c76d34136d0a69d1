"""The test-only pause points are inert unless asked for, and the full-volume message."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from duckherd_jobs.fault_points import (
    ENV_PAUSE_AT,
    ENV_PAUSE_DIR,
    POINTS,
    UnknownPausePoint,
    armed,
    pause_point,
)
from duckherd_jobs.volume import explain_full_volume, quantity

REPO = Path(__file__).resolve().parents[2]


def test_without_the_variables_every_point_is_inert(tmp_path: Path) -> None:
    for point in POINTS:
        assert not armed(point, {})
        pause_point(point, {})  # returns at once
        assert not armed(point, {ENV_PAUSE_AT: point})  # no directory: inert too
        assert not armed(point, {ENV_PAUSE_AT: point, ENV_PAUSE_DIR: str(tmp_path / "none")})
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_point_is_refused_rather_than_never_reached(tmp_path: Path) -> None:
    with pytest.raises(UnknownPausePoint, match=r"ingest\.load\.typo"):
        pause_point("ingest.load.begun", {ENV_PAUSE_AT: "ingest.load.typo"})


def test_a_point_asked_for_writes_its_marker_and_waits_for_the_release(tmp_path: Path) -> None:
    env = {ENV_PAUSE_AT: "transform.copied", ENV_PAUSE_DIR: str(tmp_path)}
    pause_point("transform.built", env)  # another point: passes
    waiter = threading.Thread(target=pause_point, args=("transform.copied", env))
    waiter.start()
    marker = tmp_path / "transform.copied.paused"
    waiter.join(timeout=0.5)
    assert waiter.is_alive()
    assert marker.exists()  # written before blocking
    (tmp_path / "transform.copied.release").touch()
    waiter.join(timeout=60)
    assert not waiter.is_alive()


def test_nothing_outside_the_jobs_and_tests_sets_the_variables() -> None:
    for root in ("operator", "charts", "crds", "hack", "Dockerfile"):
        path = REPO / root
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            text = file.read_text(errors="ignore")
            assert ENV_PAUSE_AT not in text and ENV_PAUSE_DIR not in text, file


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (1, "1Mi"),
        (20 << 20, "32Mi"),
        (512 << 20, "512Mi"),
        ((512 << 20) + 1, "1Gi"),
        (3 << 30, "4Gi"),
    ],
)
def test_sizes_become_quantities_to_grow_to(size: int, expected: str) -> None:
    assert quantity(size) == expected


def test_a_full_volume_is_said_in_words_with_a_size(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    warehouse.write_bytes(b"x" * 4096)
    error = "source orders (raw.orders): IO Error: ... No space left on device"

    message = explain_full_volume(error, warehouse)

    assert message is not None
    assert message.startswith("the warehouse volume is full (")
    assert "grow it to at least " in message and "spec.storage.size" in message
    assert message.endswith(error)
    assert explain_full_volume("HTTP 500", warehouse) is None
    assert explain_full_volume(None, warehouse) is None
