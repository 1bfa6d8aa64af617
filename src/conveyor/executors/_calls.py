"""One task on one child, from the worker's side: send the frame, await the reply or the death.

Shared by the process and fork executors (with their common base, ``ChildExecutor``) so that
timeouts, cancellation and crashes read the same in both. A child that times out, is
cancelled, or whose caller is cancelled is SIGKILLed (through the zygote); the caller then
decides whether to replace it. Progress frames the child sends before its reply (``_child``)
are handed to the task's context here, as a job in this process would report them
(``JobContext.progress``: the status record); a report that fails is logged, never the job's
failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ExecutorClosed, JobTimeout, WorkerLost
from ..job import dumps, loads
from ._wire import describe_exit, encode_frame, outcome_from_wire, read_frame_async
from ._zygote import Child, Zygote
from .base import Executor, Outcome, Task, cancelled_outcome

log = logging.getLogger("conveyor.executors")
JOB_FIELDS = ("jid", "name", "queue", "attempt")
PROGRESS_TAG = dumps({"op": "progress"})[:-1]  # how every progress frame starts; replies: {"ok"


def task_frame(task: Task) -> bytes:
    """The frame for a task; raises SerializationError for arguments JSON cannot carry."""
    msg: dict[str, Any] = {"name": task.name, "args": list(task.args)}
    if task.kwargs:
        msg["kwargs"] = task.kwargs
    ctx = task.context
    if ctx is not None and all(hasattr(ctx, f) for f in JOB_FIELDS):
        msg["job"] = {f: getattr(ctx, f) for f in JOB_FIELDS}
    return encode_frame(dumps(msg))


async def _roundtrip(child: Child, frame: bytes, task: Task) -> bytes | None:
    if frame:
        child.writer.write(frame)
        await child.writer.drain()
    while True:
        raw = await read_frame_async(child.reader)
        if raw is None or not raw.startswith(PROGRESS_TAG):
            return raw
        relay_progress(task, raw)


def relay_progress(task: Task, raw: bytes) -> None:
    """Report a child's progress frame through the task's context (the worker's JobContext)."""
    report = getattr(task.context, "progress", None)
    if not callable(report):
        return
    try:
        msg = loads(raw)
        meta = msg.get("meta") or {}
        report(float(msg["fraction"]), str(msg.get("message") or ""), **meta)
    except Exception as exc:  # a lost progress report must not fail the job
        log.warning("progress of job %s not recorded: %s", task.key, exc)


async def call(kind: str, zygote: Zygote, child: Child, frame: bytes, task: Task,
               started: float, queued: float) -> tuple[Outcome, dict[str, Any] | None]:
    """Run ``task`` on ``child``. Returns the outcome and the decoded reply (None if none came).

    ``frame`` may be empty when it was queued on the channel before the child was forked.
    """
    child.busy = True
    try:
        return await _call(kind, zygote, child, frame, task, started, queued)
    finally:
        child.busy = False


async def _call(kind: str, zygote: Zygote, child: Child, frame: bytes, task: Task,
                started: float, queued: float) -> tuple[Outcome, dict[str, Any] | None]:
    try:
        raw = await asyncio.wait_for(_roundtrip(child, frame, task), task.timeout)
    except TimeoutError:
        zygote.kill(child.pid)
        timeout = JobTimeout(f"job {task.name!r} ran past its timeout of {task.timeout}s; "
                             f"the {kind} executor killed its child process {child.pid}")
        return Outcome.failure(timeout, time.monotonic() - started, queued, []), None
    except BaseException:
        zygote.kill(child.pid)  # our caller gave up (shutdown): the child must not run on
        raise
    if raw is None:
        status = await child.exit_status()
        if child.cancelled:
            return cancelled_outcome(started, queued), None
        error = WorkerLost(f"the {kind} executor's child process {child.pid} died while running "
                           f"job {task.name!r}: {describe_exit(status)}")
        return Outcome.failure(error, time.monotonic() - started, queued, []), None
    reply = loads(raw)
    return outcome_from_wire(reply, time.monotonic() - started, queued), reply


class ChildExecutor(Executor):
    """What the process and fork executors share: a zygote, the child running each task (by
    task key), the tasks waiting for a child (and whether they were cancelled meanwhile), and
    a drained event for a graceful stop."""

    def __init__(self, functions: Mapping[str, Callable[..., Any]], capacity: int,
                 zygote: Zygote) -> None:
        super().__init__(functions, capacity)
        self._zygote = zygote
        self._running: dict[str, Child] = {}
        self._waiting: dict[str, bool] = {}  # key -> cancel requested before it had a child
        self._closed = False
        self._drained = asyncio.Event()

    def _refuse(self, task: Task) -> tuple[Outcome | None, bytes]:
        """(the outcome of a task that cannot be sent, or None) and the frame to send."""
        if self._closed:
            error = ExecutorClosed(f"the {self.kind} executor is stopped")
            return self._record(Outcome.failure(error)), b""
        try:
            return None, task_frame(task)
        except Exception as exc:
            queued = time.monotonic() - task.submitted
            return self._record(Outcome.failure(exc, 0.0, queued, [])), b""

    def cancel(self, key: str) -> bool:
        if key in self._waiting:
            self._waiting[key] = True
            return True
        child = self._running.get(key)
        if child is None:
            return False
        child.cancelled = True
        self._zygote.kill(child.pid)
        return True

    async def _close(self, grace_s: float) -> None:
        """Refuse new tasks and give the running ones up to ``grace_s`` to finish."""
        self._closed = True
        if self._stats.in_flight and grace_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), grace_s)
