"""The worker: an asyncio orchestrator plus its background duties (see ``orchestrator.py``)."""

from __future__ import annotations

import asyncio
import gc
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


# CPython's collector runs a young-generation collection after 700 more allocations than
# deallocations of container objects, and a middle one every 10 young ones. Every job in flight
# holds a dozen or more such objects for its whole run (task, coroutines, future, timer, context,
# dicts), so at 10,000 jobs in flight nearly everything a collection walks is alive, and it is
# walked again in the middle generation every few tenths of a second. Measured (load 6-10 on 2
# CPUs, so the times are inflated): 10,000 concurrent 1 s sleeps on the bare asyncio executor
# took 63-77 us of CPU per job with the defaults and 31-37 us with collection off; through the
# worker (bench/executors/worker_10k.py, stream) a young threshold of 10,000 with the default
# middle one spent 3.3 s of a 12 s run collecting (134 us CPU per job), these values about 0.5 s
# (85 us), collection off 85 us. Cyclic garbage is still collected, every 100,000 net
# allocations: a fraction of a second at full load. A job in flight holds about 22 container
# objects (counted with gc.get_count(): 12 from fetch to its task, 10 more by its first await),
# so a burst of 10,000 jobs grows the young generation by 220,000: with a threshold of 100,000
# two collections walked it mid-burst, 15 ms of the 133 ms the worker took to start the burst
# (88% of ideal); 300,000 lets a burst of 10,000 start without one (89.7%, 2026-12-02, Xeon).
# The threshold counts net allocations, so only cyclic garbage waits longer for collection.
GC_YOUNG_THRESHOLD = 300_000
GC_MIDDLE_THRESHOLD = 50  # young collections per middle-generation collection


def tune_gc() -> None:
    """For a process that is a worker and nothing else (``run_worker``, the CLI): freeze what
    start-up loaded (modules, the app) so that collections skip it, and collect less often (see
    above). Embedding a :class:`Worker` in another program leaves its collector alone."""
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    if young:  # 0: collection disabled by the application; leave it so
        gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), max(middle, GC_MIDDLE_THRESHOLD), old)


def run_worker(app: App, queues: Sequence[QueueSpec] | None = None, **options: Any) -> Worker:
    """Run a worker in the foreground until TERM/INT; returns it after a graceful stop."""
    worker = Worker(app, queues, **options)
    tune_gc()

    async def main() -> None:
        install(asyncio.get_running_loop(), worker.handle_signal)
        await worker.run()

    loop = new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return worker


__all__ = ["QueueSpec", "Worker", "parse_queue_option", "run_worker", "tune_gc"]
