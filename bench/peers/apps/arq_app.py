"""arq's benchmark coroutines; ``max_jobs`` comes from BENCH_CONCURRENCY (arq's default: 10)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import marks
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings


async def noop(ctx: dict[str, Any], i: int) -> None:
    await marks.adone()


async def sleep(ctx: dict[str, Any], ms: int) -> None:
    await asyncio.sleep(ms / 1000)
    await marks.adone()


async def stamp(ctx: dict[str, Any], sent: float) -> None:
    await marks.astamp(sent)


async def second(ctx: dict[str, Any], i: int) -> None:
    await marks.astarted()
    await asyncio.sleep(1)
    await marks.adone()


class WorkerSettings:
    functions = [noop, sleep, stamp, second]
    redis_settings = RedisSettings.from_dsn(marks.BROKER_URL)
    max_jobs = int(os.environ.get("BENCH_CONCURRENCY", "10"))


_pool: list[ArqRedis] = []


async def setup() -> None:
    _pool.append(await create_pool(RedisSettings.from_dsn(marks.BROKER_URL)))


async def teardown() -> None:
    await _pool[0].aclose()


async def enqueue(kind: str, arg: float) -> None:
    await _pool[0].enqueue_job(kind, arg)
