"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.services import PostgresServer, RedisServer, postgres_server, redis_server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the whole session."""
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    """A real Redis server for the whole session."""
    with redis_server() as server:
        yield server


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The whole fault matrix (docs/faults.md: job-level and on the cluster) runs with
    `make bench-faults` (DUCKHERD_FAULT_MATRIX=1) only."""
    if os.environ.get("DUCKHERD_FAULT_MATRIX"):
        return
    matrix = [item for item in items if item.get_closest_marker("fault_matrix")]
    if matrix:
        config.hook.pytest_deselected(items=matrix)
        items[:] = [item for item in items if not item.get_closest_marker("fault_matrix")]
