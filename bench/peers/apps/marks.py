"""What every benchmark job does besides its own work: count itself in Redis.

Runs inside each peer's venv (stdlib + redis-py only). The counter lives on a second Redis
server (``BENCH_MARKS_URL``), so the broker's ``INFO commandstats`` and its CPU time hold the
peer's own traffic only. A finished job adds one to ``bench:done``; the first and the last (the
``BENCH_TARGET``-th) also write their wall-clock time and push a signal the harness blocks on,
so the harness never polls. Drain rates come from these worker-side timestamps, not from a
queue emptying.

Thread and process peers send one INCR per job. Coroutine peers share one INCRBY among the jobs
that finish while the previous one is in flight (a group commit): an asyncio redis-py round trip
costs about as much CPU as a whole job in the fastest peers, and with 10,000 jobs finishing at
once a per-job INCR would measure redis-py instead of the peer.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import redis

DONE = "bench:done"
FIRST_AT = "bench:t_first"
LAST_AT = "bench:t_last"
START_AT = "bench:t_start"
FIRST_SIGNAL = "bench:first"
FINISHED_SIGNAL = "bench:finished"
LATENCIES = "bench:lat"

URL = os.environ.get("BENCH_MARKS_URL", "redis://127.0.0.1:6379/0")
BROKER_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")  # the peers' Redis
TARGET = int(os.environ.get("BENCH_TARGET", "0"))
# redis-py 8 defaults to a 5 s socket timeout and 100 pooled connections; the counting client
# must not impose either on a peer running 10,000 jobs at once.
CLIENT_OPTIONS: dict[str, Any] = {"socket_timeout": None, "max_connections": 20_000}

_sync: list[redis.Redis] = []
_counters: dict[int, _AsyncCounter] = {}
_started = [False]


def sync_client() -> redis.Redis:
    if not _sync:
        _sync.append(redis.Redis.from_url(URL, **CLIENT_OPTIONS))
    return _sync[0]


def _marks(first: int, last: int) -> list[tuple[str, str]]:
    """(time key, signal list) to write when the counter went from first-1 to last."""
    out = []
    if first <= 1 <= last:
        out.append((FIRST_AT, FIRST_SIGNAL))
    if first <= TARGET <= last:
        out.append((LAST_AT, FINISHED_SIGNAL))
    return out


class _AsyncCounter:
    """INCRBY for every job that finished since the last one was sent (one per event loop)."""

    def __init__(self) -> None:
        import redis.asyncio as aioredis  # here: RQ's forked work horses never pay for it

        self.client = aioredis.Redis.from_url(URL, **CLIENT_OPTIONS)
        self.waiting: list[asyncio.Future[None]] = []
        self.flushing = False

    async def add(self) -> None:
        fut = asyncio.get_running_loop().create_future()
        self.waiting.append(fut)
        if not self.flushing:
            self.flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        await fut

    async def _flush(self) -> None:
        try:
            while self.waiting:
                batch, self.waiting = self.waiting, []
                last = await self.client.incrby(DONE, len(batch))
                for at, signal in _marks(last - len(batch) + 1, last):
                    await self.client.set(at, repr(time.time()))
                    await self.client.rpush(signal, "1")
                for fut in batch:
                    fut.set_result(None)
        finally:
            self.flushing = False


def _counter() -> _AsyncCounter:
    loop_id = id(asyncio.get_running_loop())
    if loop_id not in _counters:
        _counters[loop_id] = _AsyncCounter()
    return _counters[loop_id]


def done() -> None:
    r = sync_client()
    n = r.incr(DONE)
    for at, signal in _marks(n, n):
        r.set(at, repr(time.time()))
        r.rpush(signal, "1")


async def adone() -> None:
    await _counter().add()


def started() -> None:
    """Called when a 1-second job starts: the first start in a process opens the window."""
    if not _started[0]:
        _started[0] = True
        sync_client().set(START_AT, repr(time.time()), nx=True)


async def astarted() -> None:
    if not _started[0]:
        _started[0] = True
        await _counter().client.set(START_AT, repr(time.time()), nx=True)


def stamp(sent: float) -> None:
    sync_client().rpush(LATENCIES, repr(time.time() - sent))


async def astamp(sent: float) -> None:
    await _counter().client.rpush(LATENCIES, repr(time.time() - sent))
