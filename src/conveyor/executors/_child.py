"""Inside a child process: read task frames, call the function by name, write reply frames.

A task frame is ``{"name", "args", "kwargs"[, "job": {"jid", "name", "queue", "attempt"}]}``;
the reply is ``{"ok": true, "value": ...}`` or the error form of ``_wire``. The function comes
from the ``functions`` mapping this process inherited by fork, never from the frame. A coroutine
function runs to completion on a private event loop kept for the life of the child.

:func:`serve` is the persistent worker of the ``process`` executor (it runs the ``init`` hook once,
then one task after another, and retires after ``max_tasks`` tasks or past ``max_rss_mb``);
:func:`run_once` is the single task of a ``fork`` child.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import resource
import socket
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import UnknownJobType
from ..job import dumps, loads
from ._wire import encode_frame, error_to_wire, read_frame

BYTES_PER_MB = 1024 * 1024


def serve(channel: socket.socket, request: dict[str, Any], *,
          functions: Mapping[str, Callable[..., Any]], init: Callable[[], Any] | None,
          max_tasks: int | None, max_rss_mb: float | None) -> int:
    """The loop of a persistent worker process; returns its exit code."""
    stream = channel.makefile("rb")
    if init is not None:
        try:
            init()
        except BaseException as exc:
            channel.sendall(encode_frame(dumps({"op": "init_failed", **error_to_wire(exc)})))
            return 1
    channel.sendall(encode_frame(dumps({"op": "ready", "pid": os.getpid()})))
    runner = Runner(functions)
    done = 0
    while (raw := read_frame(stream)) is not None:
        reply = runner.execute(raw)
        done += 1
        retire = (max_tasks is not None and done >= max_tasks) or (
            max_rss_mb is not None and rss_bytes() > max_rss_mb * BYTES_PER_MB)
        if retire:
            reply["retire"] = True
        channel.sendall(encode_frame(encode_reply(reply)))
        if retire:
            return 0
    return 0


def run_once(channel: socket.socket, request: dict[str, Any], *,
             functions: Mapping[str, Callable[..., Any]]) -> int:
    """The life of a fork child: one task, one reply."""
    raw = read_frame(channel.makefile("rb"))
    if raw is not None:
        channel.sendall(encode_frame(encode_reply(Runner(functions).execute(raw))))
    return 0


def encode_reply(reply: dict[str, Any]) -> bytes:
    """JSON bytes of a reply; a result JSON cannot carry turns into a SerializationError reply."""
    try:
        return dumps(reply)
    except Exception as exc:
        return dumps(error_to_wire(exc))


def rss_bytes() -> int:
    """This process's resident memory now (Linux), or its peak where /proc is missing."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Runner:
    """Calls functions by name for the frames one child receives."""

    def __init__(self, functions: Mapping[str, Callable[..., Any]]) -> None:
        self.functions = functions
        self._loop: asyncio.AbstractEventLoop | None = None

    def execute(self, raw: bytes) -> dict[str, Any]:
        from .asyncio import current_task_context

        try:
            msg = loads(raw)
            fn = self.functions.get(msg["name"])
            if fn is None:
                raise UnknownJobType(msg["name"], self.functions.keys())
        except BaseException as exc:
            return error_to_wire(exc)
        token = current_task_context.set(_job_context(msg.get("job")))
        try:
            value = fn(*msg.get("args", ()), **msg.get("kwargs") or {})
            if inspect.isawaitable(value):
                value = self._await(value)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt in job code too
            if exc.__traceback__ is not None and exc.__traceback__.tb_next is not None:
                exc = exc.with_traceback(exc.__traceback__.tb_next)  # start at the job's frame
            return error_to_wire(exc)
        finally:
            current_task_context.reset(token)
        return {"ok": True, "value": value}

    def _await(self, awaitable: Any) -> Any:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(awaitable)


def _job_context(job: Any) -> Any:
    """A ``current_job()`` context for job code (progress reports stay local in a child)."""
    if not isinstance(job, dict):
        return None
    from ..context import JobContext

    return JobContext(str(job.get("jid", "")), str(job.get("name", "")),
                      str(job.get("queue", "")), int(job.get("attempt", 1)))
