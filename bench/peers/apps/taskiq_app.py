"""Taskiq's benchmark tasks on taskiq-redis's RedisStreamBroker (the acknowledging broker its
README leads with), no result backend."""

from __future__ import annotations

import asyncio
from typing import Any

import marks
from taskiq_redis import RedisStreamBroker

broker = RedisStreamBroker(url=marks.BROKER_URL)


@broker.task(task_name="noop")
async def noop(i: int) -> None:
    await marks.adone()


@broker.task(task_name="sleep")
async def sleep(ms: int) -> None:
    await asyncio.sleep(ms / 1000)
    await marks.adone()


@broker.task(task_name="stamp")
async def stamp(sent: float) -> None:
    await marks.astamp(sent)


@broker.task(task_name="second")
async def second(i: int) -> None:
    await marks.astarted()
    await asyncio.sleep(1)
    await marks.adone()


TASKS: dict[str, Any] = {"noop": noop, "sleep": sleep, "stamp": stamp, "second": second}


async def setup() -> None:
    await broker.startup()


async def teardown() -> None:
    await broker.shutdown()


async def enqueue(kind: str, arg: float) -> None:
    await TASKS[kind].kiq(arg)
