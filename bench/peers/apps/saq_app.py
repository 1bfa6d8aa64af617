"""SAQ's benchmark coroutines (SAQ passes arguments as keywords); concurrency from the env."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import marks
from saq import Queue

queue = Queue.from_url(marks.BROKER_URL, name="default")


async def noop(ctx: dict[str, Any], *, x: int) -> None:
    await marks.adone()


async def sleep(ctx: dict[str, Any], *, x: int) -> None:
    await asyncio.sleep(x / 1000)
    await marks.adone()


async def stamp(ctx: dict[str, Any], *, x: float) -> None:
    await marks.astamp(x)


async def second(ctx: dict[str, Any], *, x: int) -> None:
    await marks.astarted()
    await asyncio.sleep(1)
    await marks.adone()


settings = {
    "queue": queue,
    "functions": [noop, sleep, stamp, second],
    "concurrency": int(os.environ.get("BENCH_CONCURRENCY", "10")),
}


async def setup() -> None:
    await queue.connect()


async def teardown() -> None:
    await queue.disconnect()


async def enqueue(kind: str, arg: float) -> None:
    await queue.enqueue(kind, x=arg)
