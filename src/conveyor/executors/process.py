"""A persistent pool of worker processes forked from a zygote: CPU-bound or crash-prone jobs.

``start()`` forks a zygote (see ``_zygote``) and has it fork ``processes`` workers (default: the
executor's capacity). Each worker runs the ``init`` hook once (load a model, open a connection),
then serves tasks one at a time over its own Unix socket, as JSON frames. Idle workers wait in a
FIFO; a task takes whichever worker is idle, so a slow task never holds up work queued behind it
(no round-robin). Per-task overhead is one JSON encode/decode each way and one socket round
trip; a list of items (a pipeline chunk) travels as one task.

A worker retires after ``max_tasks_per_child`` tasks or once its resident memory passes
``max_rss_mb`` after a task; a worker that crashes, is SIGKILLed or OOM-killed fails its task
with ``WorkerLost`` (the message says the exit code or signal) and is replaced at once. Timeouts
and cancellation SIGKILL the worker and replace it. ``stats().restarts`` counts replacements.

Functions are found by name in the ``functions`` mapping the workers inherit when forked, so
they must be in it before ``start()``. Call ``start()`` before the process starts threads.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigurationError
from ..job import loads
from . import register_executor
from ._calls import ChildExecutor, call
from ._child import serve
from ._wire import read_frame_async
from ._zygote import Child, Zygote
from .base import Outcome, Task, cancelled_outcome

log = logging.getLogger("conveyor.executors.process")
RESPAWN_BACKOFF_S = 0.1  # first pause after a failed respawn, doubled up to the cap
RESPAWN_BACKOFF_CAP_S = 5.0


class ProcessExecutor(ChildExecutor):
    """Tasks run in a pool of ``processes`` persistent worker processes."""

    kind = "process"

    def __init__(self, functions: Mapping[str, Callable[..., Any]], capacity: int | None = None,
                 *, processes: int | None = None, init: Callable[[], Any] | None = None,
                 max_tasks_per_child: int | None = None, max_rss_mb: float | None = None) -> None:
        if max_tasks_per_child is not None and max_tasks_per_child < 1:
            raise ConfigurationError("max_tasks_per_child must be at least 1")
        main = functools.partial(serve, functions=functions, init=init,
                                 max_tasks=max_tasks_per_child, max_rss_mb=max_rss_mb)
        super().__init__(functions, processes or capacity or os.cpu_count() or 1,
                         Zygote(main, name=self.kind))
        self._idle: asyncio.Queue[Child] = asyncio.Queue()
        self._children: set[Child] = set()
        self._respawns: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self._zygote.start()
        children = await asyncio.gather(*(self._spawn() for _ in range(self.capacity)),
                                        return_exceptions=True)
        errors = [c for c in children if isinstance(c, BaseException)]
        for child in children:
            if isinstance(child, Child):
                self._idle.put_nowait(child)
        if errors:
            await self.stop()
            raise errors[0]

    async def _spawn(self) -> Child:
        """A new worker, once its ``init`` hook has run."""
        if not self._zygote.alive and await self._zygote.revive():
            log.warning("the process executor's zygote died; forked a new one")
            self._stats.restarts += 1
        child = await self._zygote.spawn({})
        try:
            hello = await read_frame_async(child.reader)
        except BaseException:
            child.close()
            raise
        msg = loads(hello) if hello is not None else {}
        if msg.get("op") != "ready":
            child.close()
            if msg.get("op") == "init_failed":
                raise ConfigurationError(f"the process executor's init hook failed: "
                                         f"{msg.get('error_class')}: {msg.get('message')}")
            raise ConfigurationError(f"worker process {child.pid} died while starting")
        self._children.add(child)
        child.exited.add_done_callback(lambda _: self._on_exit(child))
        return child

    async def run(self, task: Task) -> Outcome:
        refused, frame = self._refuse(task)
        if refused is not None:
            return refused
        key = task.key or f"_{id(task)}"
        self._waiting[key] = False
        try:
            child = await self._take()
        finally:
            cancelled_early = self._waiting.pop(key)
        started = time.monotonic()
        queued = started - task.submitted
        if cancelled_early:
            self._idle.put_nowait(child)
            return self._record(cancelled_outcome(started, queued))
        self._stats.in_flight += 1
        self._drained.clear()
        self._running[key] = child
        try:
            outcome, reply = await call(self.kind, self._zygote, child, frame, task, started,
                                        queued)
        except BaseException:
            self._drop(child)
            raise
        finally:
            self._running.pop(key, None)
            self._stats.in_flight -= 1
            if self._stats.in_flight == 0:
                self._drained.set()
        self._after(child, reply)
        return self._record(outcome)

    async def _take(self) -> Child:
        while True:
            child = await self._idle.get()
            if not child.exited.done():
                return child

    def _after(self, child: Child, reply: dict[str, Any] | None) -> None:
        """Put a worker back, or replace it if it died, retired, or was cancelled."""
        if reply is None or reply.get("retire") or child.cancelled or self._closed:
            self._drop(child)
        else:
            self._idle.put_nowait(child)

    def _drop(self, child: Child) -> None:
        if child in self._children:
            self._children.discard(child)
            child.close()
            if not child.exited.done():
                self._zygote.kill(child.pid)
            self._replace()

    def _on_exit(self, child: Child) -> None:
        """A worker died on its own (idle and OOM-killed, say): replace it now."""
        if child in self._children and not child.busy:
            self._drop(child)

    def _replace(self) -> None:
        if self._closed:
            return
        self._stats.restarts += 1
        task = asyncio.ensure_future(self._respawn())
        self._respawns.add(task)
        task.add_done_callback(self._respawns.discard)

    async def _respawn(self) -> None:
        pause = RESPAWN_BACKOFF_S
        while not self._closed:
            try:
                child = await self._spawn()
            except Exception as exc:
                log.warning("could not replace a worker process (retrying in %.1fs): %s",
                            pause, exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, RESPAWN_BACKOFF_CAP_S)
                continue
            if self._closed:
                child.close()
            else:
                self._idle.put_nowait(child)
            return

    async def stop(self, grace_s: float = 0.0) -> None:
        await self._close(grace_s)
        for task in list(self._respawns):
            task.cancel()
        for child in list(self._children):
            child.close()
        self._children.clear()
        await self._zygote.stop()


register_executor("process", ProcessExecutor)
