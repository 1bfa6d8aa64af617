"""Shared fixtures: one real Redis server for the session, flushed before each test.

Redis-dependent tests fail rather than skip under ``CI=true``, so a CI machine without a server
binary cannot pass by skipping everything.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

# tests/ is on sys.path (pytest puts a rootless conftest's folder there), hence a bare import.
from redis_server import RedisServer, require_server_binary


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis/valkey server on a free port for the whole session, stopped at the end."""
    with RedisServer(require_server_binary()) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, after FLUSHALL so each test starts from an empty server."""
    with redis_server.client() as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
def redis_sync(redis_url: str) -> Iterator[redis.Redis]:
    """A synchronous client (bytes responses) on the clean session server, closed afterwards."""
    client = redis.Redis.from_url(redis_url, decode_responses=False)
    try:
        yield client
    finally:
        client.close()
