"""Fixtures shared by the job tests."""

from __future__ import annotations

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
