"""A fresh process per task, forked from a zygote: copy-on-write sharing, nothing carried over.

``start()`` forks the zygote from the worker (before the worker starts threads) and runs the
``init`` hook *in the zygote*, once: whatever it loads, and everything the worker loaded before
``start()``, is shared copy-on-write with every task's process. The zygote calls ``gc.freeze()``
before each fork so the children's garbage collector does not write to (and so copy) the pages
of the inherited objects. Reference counts still change when a child reads a Python object, so
a table of many small objects is copied page by page as it is read, while one large buffer
(``bytes``, ``array``, ``mmap``, a NumPy array) stays shared: see ``docs/executors.md``.

Each task costs a fork (about a millisecond for a small zygote, more with a large heap: page
tables are copied), so this suits tasks of tens of milliseconds and more that need a pristine
process or a large shared read-only state. Up to ``capacity`` forks run at once. A crash,
SIGKILL or OOM kill fails only that task with ``WorkerLost``; timeouts and cancellation SIGKILL
the task's process. If the zygote itself dies, the next task forks a new one
(``stats().restarts``).
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import WorkerLost
from . import register_executor
from ._calls import ChildExecutor, call
from ._child import run_once
from ._zygote import Child, Zygote
from .base import Outcome, Task, cancelled_outcome


class ForkExecutor(ChildExecutor):
    """Each task runs in its own process, forked from a zygote; at most ``capacity`` at once."""

    kind = "fork"

    def __init__(self, functions: Mapping[str, Callable[..., Any]], capacity: int | None = None,
                 *, forks: int | None = None, init: Callable[[], Any] | None = None) -> None:
        main = functools.partial(run_once, functions=functions)
        super().__init__(functions, forks or capacity or os.cpu_count() or 1,
                         Zygote(main, before_serving=init, name=self.kind))
        self._slots = asyncio.Semaphore(self.capacity)

    @property
    def zygote_pid(self) -> int:
        """The zygote's pid (for memory measurements and tests)."""
        return self._zygote.pid

    async def start(self) -> None:
        await self._zygote.start()

    async def run(self, task: Task) -> Outcome:
        refused, frame = self._refuse(task)
        if refused is not None:
            return refused
        key = task.key or f"_{id(task)}"
        self._waiting[key] = False
        try:
            async with self._slots:
                self._stats.in_flight += 1
                self._drained.clear()
                try:
                    return self._record(await self._fork_and_call(task, key, frame))
                finally:
                    self._stats.in_flight -= 1
                    if self._stats.in_flight == 0:
                        self._drained.set()
        finally:
            self._waiting.pop(key, None)

    async def _fork_and_call(self, task: Task, key: str, frame: bytes) -> Outcome:
        started = time.monotonic()
        queued = started - task.submitted
        if self._waiting[key]:
            return cancelled_outcome(started, queued)
        try:
            child = await self._spawn(frame)
        except WorkerLost as exc:
            return Outcome.failure(exc, time.monotonic() - started, queued, [])
        if self._waiting.pop(key):
            self._zygote.kill(child.pid)
            child.close()
            return cancelled_outcome(started, queued)
        self._running[key] = child
        try:
            outcome, _ = await call(self.kind, self._zygote, child, b"", task, started, queued)
        finally:
            self._running.pop(key, None)
            child.close()
        return outcome

    async def _spawn(self, frame: bytes) -> Child:
        try:
            return await self._zygote.spawn({}, frame)
        except WorkerLost:
            if self._closed or not await self._zygote.revive():
                raise
            self._stats.restarts += 1
            return await self._zygote.spawn({}, frame)

    async def stop(self, grace_s: float = 0.0) -> None:
        await self._close(grace_s)
        await self._zygote.stop()


register_executor("fork", ForkExecutor)
