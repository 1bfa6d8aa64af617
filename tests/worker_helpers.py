"""Helpers to run a real worker in the test's event loop with fast settings."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from conveyor import App
from conveyor.settings import Settings
from conveyor.worker import Worker

FAST = dict(lease_ttl_s=1.0, heartbeat_interval_s=0.2, recoverer_interval_s=0.2,
            scheduler_interval_s=0.1, idle_block_s=0.2, shutdown_grace_s=1.0, status_ttl_s=600)


def fast_app(redis_url: str, **overrides: Any) -> App:
    return App(settings=Settings(redis_url=redis_url, **{**FAST, **overrides}))


@contextlib.asynccontextmanager
async def running_worker(app: App, **options: Any) -> AsyncIterator[Worker]:
    """A worker running in the background of this loop; stopped gracefully on exit."""
    worker = Worker(app, **options)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        while not hasattr(worker, "heartbeat"):
            if task.done():
                await task
            await asyncio.sleep(0.005)
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def wait_for(cond: Callable[[], Any], timeout_s: float = 10.0, what: str = "") -> Any:
    """Poll ``cond`` (sync, may do I/O in a thread) until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await asyncio.to_thread(cond)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or cond}")
        await asyncio.sleep(0.02)
