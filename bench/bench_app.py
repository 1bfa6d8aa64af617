"""Jobs used by the core benchmarks: no-ops and a pickup-latency probe."""

from __future__ import annotations

import asyncio
import time

from conveyor import App

app = App()


@app.job(name="noop")
async def noop(i: int) -> None:
    return None


@app.job(name="noop_sync")
def noop_sync(i: int) -> None:
    return None


@app.job(name="stamp")
async def stamp(sent: float) -> float:
    return time.time() - sent


@app.job(name="sleep")
async def sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)
