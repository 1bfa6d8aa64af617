"""What this machine can do at best: Redis commands per second and Python round trips per second.

``redis-benchmark`` (shipped with redis-server) gives the server's ceiling for the commands a job
system uses, from one client (pure round-trip bound), from 50 clients, and pipelined. The Python
probes give the client side's ceiling: sequential round trips with redis-py (sync, and asyncio on
uvloop as Conveyor's worker runs), commands per second when pipelined, and EVALSHA calls per
second of an empty script (the floor of one Lua call).
"""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio as aioredis

BENCH_TESTS = "ping,set,incr,lpush,rpop,hset"
CONFIGS = (("c1", 1, 1), ("c50", 50, 1), ("c50_p16", 50, 16))  # name, clients, pipeline
PIPELINE = 100


def measure(url: str, port: int, smoke: bool) -> dict[str, Any]:
    n = 20_000 if smoke else 200_000
    out: dict[str, Any] = {"redis_benchmark": _redis_benchmark(port, n)}
    py_n = 2_000 if smoke else 20_000
    r = redis.Redis.from_url(url)
    out["python_sync_ping_per_s"] = _rate(py_n, lambda: [r.ping() for _ in range(py_n)])
    pipe_rounds = py_n // 10
    out["python_sync_pipelined_cmds_per_s"] = _rate(pipe_rounds * PIPELINE,
                                                    lambda: _pipelined(r, pipe_rounds))
    sha = r.script_load("return 1")
    out["python_sync_evalsha_per_s"] = _rate(py_n, lambda: [r.evalsha(sha, 0)
                                                             for _ in range(py_n)])
    out["python_async_ping_per_s"] = _rate(py_n, lambda: _async(url, py_n))
    r.flushall()
    r.close()
    return out


def _rate(n: int, fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return round(n / (time.perf_counter() - started))


def _pipelined(r: redis.Redis, rounds: int) -> None:
    for _ in range(rounds):
        pipe = r.pipeline(transaction=False)
        for _ in range(PIPELINE):
            pipe.incr("bench:limits")
        pipe.execute()


def _async(url: str, n: int) -> None:
    async def pings() -> None:
        client = aioredis.Redis.from_url(url)
        for _ in range(n):
            await client.ping()
        await client.aclose()

    _run(pings)


def _run(coro: Callable[[], Awaitable[None]]) -> None:
    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(coro())
    finally:
        loop.close()


def _redis_benchmark(port: int, n: int) -> dict[str, dict[str, float]]:
    binary = shutil.which("redis-benchmark") or shutil.which("valkey-benchmark")
    if binary is None:
        return {}
    results: dict[str, dict[str, float]] = {}
    for name, clients, pipeline in CONFIGS:
        out = subprocess.run([binary, "-h", "127.0.0.1", "-p", str(port), "-n", str(n),
                              "-c", str(clients), "-P", str(pipeline), "-t", BENCH_TESTS,
                              "--csv"], capture_output=True, text=True, timeout=300)
        rows = list(csv.reader(io.StringIO(out.stdout)))
        results[name] = {row[0]: float(row[1]) for row in rows[1:] if len(row) > 1}
    return results
