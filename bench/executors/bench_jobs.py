"""Jobs for the executor benchmarks, and the App the Python sidecar serves for them."""

from __future__ import annotations

import asyncio
import time

from conveyor.app import App, JobSpec

SLEEP_S = 0.01


def noop() -> None:
    return None


def sleep10() -> None:
    time.sleep(SLEEP_S)


async def anoop() -> None:
    return None


async def asleep10() -> None:
    await asyncio.sleep(SLEEP_S)


async def asleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


SYNC = {"Noop": noop, "Sleep10": sleep10}
ASYNC = {"Noop": anoop, "Sleep10": asleep10, "Sleep": asleep}

app = App()
for _name, _fn in ASYNC.items():
    app.register(JobSpec(name=_name, fn=_fn))
