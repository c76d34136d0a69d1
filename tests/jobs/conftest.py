"""Fixtures shared by the job tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis as redis_client

from tests.services import RedisServer


@pytest.fixture
def client(redis: RedisServer) -> Iterator[redis_client.Redis]:
    """A client of the session's real Redis server, decoding to str."""
    connection = redis_client.Redis.from_url(redis.url(), decode_responses=True)
    yield connection
    connection.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The whole fault matrix (docs/faults.md) runs with `make bench-faults` only."""
    if os.environ.get("DUCKHERD_FAULT_MATRIX"):
        return
    matrix = [item for item in items if item.get_closest_marker("fault_matrix")]
    if matrix:
        config.hook.pytest_deselected(items=matrix)
        items[:] = [item for item in items if not item.get_closest_marker("fault_matrix")]
