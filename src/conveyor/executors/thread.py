"""Run sync jobs in a bounded pool of threads (for I/O-bound code).

A thread cannot be killed. On timeout or cancellation the job is reported as failed at once and
the worker stops waiting for it, but its thread keeps its slot until the function returns, so a
stuck function lowers this executor's capacity instead of piling up hidden work. Job code can
poll ``conveyor.current_job().cancelled`` to stop early.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import JobTimeout
from .asyncio import current_task_context
from .base import Executor, Outcome, Task, cancelled_outcome


class ThreadExecutor(Executor):
    """A ``ThreadPoolExecutor`` with ``capacity`` threads."""

    kind = "thread"

    def __init__(self, functions: Mapping[str, Callable[..., Any]], capacity: int = 10) -> None:
        super().__init__(functions, capacity)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=capacity, thread_name_prefix="conveyor-job"
        )
        self._slots = asyncio.Semaphore(capacity)
        self._waiters: dict[str, asyncio.Future[Any]] = {}
        self._busy: set[concurrent.futures.Future[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self, task: Task) -> Outcome:
        await self._slots.acquire()
        started = time.monotonic()
        queued = started - task.submitted
        try:
            fn = self.lookup(task.name)
        except Exception as exc:
            self._slots.release()
            return self._record(Outcome.failure(exc, 0.0, queued))
        self._stats.in_flight += 1
        ctx = contextvars.copy_context()
        ctx.run(current_task_context.set, task.context)
        cfut = self._pool.submit(ctx.run, fn, *task.args, **task.kwargs)
        self._busy.add(cfut)
        cfut.add_done_callback(self._release_from_thread)
        waiter = asyncio.wrap_future(cfut)
        if task.key:
            self._waiters[task.key] = waiter
        try:
            value = await asyncio.wait_for(asyncio.shield(waiter), task.timeout)
        except TimeoutError:
            error = JobTimeout(
                f"job {task.name!r} ran past its timeout of {task.timeout}s "
                "(its thread cannot be killed and keeps its slot until it returns)"
            )
            return self._record(Outcome.failure(error, time.monotonic() - started, queued, []))
        except asyncio.CancelledError:
            if task.key and getattr(task.context, "cancelled", False):
                return self._record(cancelled_outcome(started, queued))
            raise
        except Exception as exc:
            return self._record(Outcome.failure(exc, time.monotonic() - started, queued))
        finally:
            if task.key:
                self._waiters.pop(task.key, None)
        return self._record(Outcome.success(value, time.monotonic() - started, queued))

    def _release_from_thread(self, cfut: concurrent.futures.Future[Any]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._release, cfut)

    def _release(self, cfut: concurrent.futures.Future[Any]) -> None:
        self._busy.discard(cfut)
        self._stats.in_flight -= 1
        self._slots.release()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    def cancel(self, key: str) -> bool:
        waiter = self._waiters.get(key)
        if waiter is None:
            return False
        waiter.cancel()
        return True

    async def stop(self, grace_s: float = 0.0) -> None:
        busy = [asyncio.wrap_future(f) for f in list(self._busy)]
        if busy and grace_s > 0:
            await asyncio.wait(busy, timeout=grace_s)
        self._pool.shutdown(wait=False, cancel_futures=True)
