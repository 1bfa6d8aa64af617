"""Shared fixtures: one real Redis server for the session, flushed before each test.

Redis-dependent tests fail rather than skip under ``CI=true``, so a CI machine without a server
binary cannot pass by skipping everything.

A safety net fails the test after which an embedded Redis server runs in the checkout's
``./.conveyor`` (the default data folder when a test runs a command or an app without a Redis
URL from the checkout) and stops that server by its pid; one already running when the session
started is left alone.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from conveyor.embedded import PID_NAME, server_status
from conveyor.settings import DEFAULT_DATA_DIR

# tests/ is on sys.path (pytest puts a rootless conftest's folder there), hence a bare import.
from redis_server import RedisServer, require_server_binary

CHECKOUT_DATA_DIR = Path(__file__).resolve().parent.parent / DEFAULT_DATA_DIR
LEAK_STOP_TIMEOUT_S = 15.0


def checkout_server_pid() -> int | None:
    """The pid of a live embedded server in the checkout's data folder, else None.

    Costs one stat when none runs: the server writes its pidfile while it runs and removes it
    when it stops. ``server_status`` trusts the pid only if it is a redis/valkey server whose
    working directory is that folder.
    """
    if not (CHECKOUT_DATA_DIR / PID_NAME).exists():
        return None
    return server_status(CHECKOUT_DATA_DIR)["pid"]


def fail_on_leaked_server(before: int | None, culprit: str) -> None:
    """Stop (SIGTERM to its pid) and fail loudly on a server the session did not find running."""
    pid = checkout_server_pid()
    if pid is None or pid == before:
        return
    os.kill(pid, signal.SIGTERM)  # redis/valkey shut down cleanly on TERM
    deadline = time.monotonic() + LEAK_STOP_TIMEOUT_S
    while checkout_server_pid() == pid and time.monotonic() < deadline:
        time.sleep(0.05)
    outcome = ("it is still running after SIGTERM" if checkout_server_pid() == pid
               else "it was stopped")
    pytest.fail(f"{culprit} left an embedded Redis server (pid {pid}) running in "
                f"{CHECKOUT_DATA_DIR}: a test must give its app or command a Redis URL or a "
                f"temporary data folder, and stop what it starts ({outcome})", pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def checkout_server_at_start() -> Iterator[int | None]:
    """The checkout's embedded server running before any test (None: none); after the last
    test, whatever session or module fixtures left running there fails the session."""
    before = checkout_server_pid()
    yield before
    fail_on_leaked_server(before, "the session's fixtures")


@pytest.fixture(autouse=True)
def no_embedded_server_left_in_checkout(request: pytest.FixtureRequest,
                                        checkout_server_at_start: int | None) -> Iterator[None]:
    yield
    fail_on_leaked_server(checkout_server_at_start, request.node.nodeid)


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
