"""Conveyor's benchmark jobs (async, on the event loop: Conveyor's idiomatic executor)."""

from __future__ import annotations

import asyncio

import marks

from conveyor import App, EnqueueRequest

app = App()  # CONVEYOR_REDIS_URL is set by the harness


@app.job(name="noop")
async def noop(i: int) -> None:
    await marks.adone()


@app.job(name="sleep")
async def sleep(ms: int) -> None:
    await asyncio.sleep(ms / 1000)
    await marks.adone()


@app.job(name="stamp")
async def stamp(sent: float) -> None:
    await marks.astamp(sent)


@app.job(name="second")
async def second(i: int) -> None:
    await marks.astarted()
    await asyncio.sleep(1)
    await marks.adone()


def enqueue(kind: str, arg: float) -> None:
    app.enqueue(kind, args=[arg])


def enqueue_bulk(kind: str, args: list[float]) -> None:
    app.enqueue_many([EnqueueRequest(kind, args=[a]) for a in args])
