"""Run coroutine jobs on the orchestrator's event loop: thousands in flight in one process.

A plain function registered here is called on the loop too, so it must be quick; blocking work
belongs in the ``thread`` executor. Timeouts and cancellation cancel the coroutine. A coroutine
that blocks the loop cannot be interrupted from inside the loop, which is why the worker renews
its lease from a separate thread (see ``worker/heartbeat.py``).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import JobTimeout
from .base import Executor, Outcome, Task, cancelled_outcome

current_task_context: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "conveyor_task_context", default=None
)


class AsyncioExecutor(Executor):
    """Coroutines on the running loop, at most ``capacity`` at once."""

    kind = "asyncio"

    def __init__(self, functions: Mapping[str, Callable[..., Any]], capacity: int = 1000) -> None:
        super().__init__(functions, capacity)
        self._slots = asyncio.Semaphore(capacity)
        self._running: dict[str, asyncio.Task[Any]] = {}
        self._cancel_requested: set[str] = set()

    async def run(self, task: Task) -> Outcome:
        async with self._slots:
            started = time.monotonic()
            queued = started - task.submitted
            self._stats.in_flight += 1
            try:
                return self._record(await self._call(task, started, queued))
            finally:
                self._stats.in_flight -= 1

    async def _call(self, task: Task, started: float, queued: float) -> Outcome:
        if task.key and task.key in self._cancel_requested:
            self._cancel_requested.discard(task.key)
            return cancelled_outcome(started, queued)
        try:
            fn = self.lookup(task.name)
        except Exception as exc:
            return Outcome.failure(exc, 0.0, queued)
        token = current_task_context.set(task.context)
        inner = asyncio.ensure_future(_invoke(fn, task))
        if task.key:
            self._running[task.key] = inner
        try:
            if task.timeout:
                value = await asyncio.wait_for(inner, task.timeout)
            else:
                value = await inner
        except TimeoutError:
            error = JobTimeout(f"job {task.name!r} ran past its timeout of {task.timeout}s")
            return Outcome.failure(error, time.monotonic() - started, queued, [])
        except asyncio.CancelledError:
            if task.key and task.key in self._cancel_requested:
                self._cancel_requested.discard(task.key)
                return cancelled_outcome(started, queued)
            raise
        except Exception as exc:
            return Outcome.failure(exc, time.monotonic() - started, queued)
        finally:
            current_task_context.reset(token)
            if task.key:
                self._running.pop(task.key, None)
        return Outcome.success(value, time.monotonic() - started, queued)

    def cancel(self, key: str) -> bool:
        inner = self._running.get(key)
        self._cancel_requested.add(key)
        if inner is None:
            return False
        inner.cancel()
        return True

    async def stop(self, grace_s: float = 0.0) -> None:
        pending = list(self._running.values())
        if pending and grace_s > 0:
            await asyncio.wait(pending, timeout=grace_s)
        for inner in pending:
            if not inner.done():
                inner.cancel()


async def _invoke(fn: Callable[..., Any], task: Task) -> Any:
    result = fn(*task.args, **task.kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result
