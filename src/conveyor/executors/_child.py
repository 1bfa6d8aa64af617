"""Inside a child process: read task frames, call the function by name, write reply frames.

A task frame is ``{"name", "args", "kwargs"[, "job": {"jid", "name", "queue", "attempt"}]}``;
the reply is ``{"ok": true, "value": ...}`` or the error form of ``_wire``. The function comes
from the ``functions`` mapping this process inherited by fork, never from the frame. A coroutine
function runs to completion on a private event loop kept for the life of the child.

While the job runs, each ``current_job().progress(fraction, message, **meta)`` it calls is sent
on the same channel ahead of the reply as a *progress frame*, ``{"op": "progress", "fraction",
"message"[, "meta"]}``; the worker's side (``_calls``) hands it to the job's context there, which
stores it in the status record. Frames are sent under one lock, so a job thread reporting
progress cannot interleave with the reply.

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
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import UnknownJobType
from ..job import dumps, loads
from ._wire import encode_frame, error_to_wire, read_frame

BYTES_PER_MB = 1024 * 1024


class Channel:
    """The child's end of its channel: whole frames, one at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()

    def send(self, payload: bytes) -> None:
        with self._lock:
            self.sock.sendall(encode_frame(payload))


def serve(channel: socket.socket, request: dict[str, Any], *,
          functions: Mapping[str, Callable[..., Any]], init: Callable[[], Any] | None,
          max_tasks: int | None, max_rss_mb: float | None) -> int:
    """The loop of a persistent worker process; returns its exit code."""
    stream = channel.makefile("rb")
    out = Channel(channel)
    if init is not None:
        try:
            init()
        except BaseException as exc:
            out.send(dumps({"op": "init_failed", **error_to_wire(exc)}))
            return 1
    out.send(dumps({"op": "ready", "pid": os.getpid()}))
    runner = Runner(functions, out.send)
    done = 0
    while (raw := read_frame(stream)) is not None:
        reply = runner.execute(raw)
        done += 1
        retire = (max_tasks is not None and done >= max_tasks) or (
            max_rss_mb is not None and rss_bytes() > max_rss_mb * BYTES_PER_MB)
        if retire:
            reply["retire"] = True
        out.send(encode_reply(reply))
        if retire:
            return 0
    return 0


def run_once(channel: socket.socket, request: dict[str, Any], *,
             functions: Mapping[str, Callable[..., Any]]) -> int:
    """The life of a fork child: one task, one reply."""
    raw = read_frame(channel.makefile("rb"))
    if raw is not None:
        out = Channel(channel)
        out.send(encode_reply(Runner(functions, out.send).execute(raw)))
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
    """Calls functions by name for the frames one child receives; ``send`` carries progress
    frames to the worker (None: progress stays in the child)."""

    def __init__(self, functions: Mapping[str, Callable[..., Any]],
                 send: Callable[[bytes], None] | None = None) -> None:
        self.functions = functions
        self.send = send
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
        token = current_task_context.set(_job_context(msg.get("job"), self.send))
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


def _job_context(job: Any, send: Callable[[bytes], None] | None = None) -> Any:
    """A ``current_job()`` context for job code; its progress reports go out through ``send``."""
    if not isinstance(job, dict):
        return None
    from ..context import JobContext

    def report(jid: str, fields: dict[str, Any]) -> None:
        if send is not None and "progress" in fields:
            send(dumps({"op": "progress", **loads(fields["progress"])}))

    return JobContext(str(job.get("jid", "")), str(job.get("name", "")),
                      str(job.get("queue", "")), int(job.get("attempt", 1)), _report=report)
