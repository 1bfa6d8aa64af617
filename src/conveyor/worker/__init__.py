"""The worker: an asyncio orchestrator plus its background duties (see ``orchestrator.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from ..app import App
from .orchestrator import QueueSpec, Worker, parse_queue_option
from .signals import install


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when installed (faster), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_worker(app: App, queues: Sequence[QueueSpec] | None = None, **options: Any) -> Worker:
    """Run a worker in the foreground until TERM/INT; returns it after a graceful stop."""
    worker = Worker(app, queues, **options)

    async def main() -> None:
        install(asyncio.get_running_loop(), worker.handle_signal)
        await worker.run()

    loop = new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return worker


__all__ = ["QueueSpec", "Worker", "parse_queue_option", "run_worker"]
