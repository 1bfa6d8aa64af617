"""What crosses a process or network boundary for an executor: frames, errors, exit statuses.

Everything is JSON (``conveyor.job.dumps``/``loads``); nothing is pickled. A frame on a pipe is a
4-byte big-endian length followed by that many bytes of JSON. A failed task travels as
``{"ok": false, "error_class", "message", "backtrace"[, "delay"]}`` in the process, fork and
HTTP executors alike, and comes back as an :class:`Outcome` whose ``error_class`` is the
original class name. Only the exceptions the orchestrator acts on (``Retry`` and its delay,
``Cancelled``) are rebuilt as themselves; the others become :class:`RemoteError`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import struct
from typing import Any, BinaryIO

from ..errors import Cancelled, JobTimeout, Retry, WorkerLost
from ..job import dumps
from .base import MAX_BACKTRACE_LINES, Outcome, format_backtrace

FRAME_HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 1 << 30  # 1 GiB: a bound on one task's arguments or result


class RemoteError(Exception):
    """An exception raised by job code in another process; ``error_class`` is its real class."""

    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class


def encode_frame(payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME_BYTES:
        raise ValueError(f"a frame of {len(payload)} bytes is over the {MAX_FRAME_BYTES} limit")
    return FRAME_HEADER.pack(len(payload)) + payload


def read_frame(stream: BinaryIO) -> bytes | None:
    """Read one frame from a blocking binary stream; None at end of stream."""
    header = stream.read(FRAME_HEADER.size)
    if len(header) < FRAME_HEADER.size:
        return None
    (size,) = FRAME_HEADER.unpack(header)
    body = stream.read(size)
    return body if len(body) == size else None


async def read_frame_async(reader: asyncio.StreamReader) -> bytes | None:
    """Read one frame from an asyncio stream; None when the other side went away."""
    try:
        header = await reader.readexactly(FRAME_HEADER.size)
        (size,) = FRAME_HEADER.unpack(header)
        if size > MAX_FRAME_BYTES:
            return None
        return await reader.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


def error_to_wire(error: BaseException) -> dict[str, Any]:
    """The wire form of an exception raised by job code."""
    wire: dict[str, Any] = {
        "ok": False,
        "error_class": type(error).__name__,
        "message": str(error),
        "backtrace": format_backtrace(error),
    }
    if isinstance(error, Retry) and error.delay is not None:
        wire["delay"] = error.delay
    return wire


def error_from_wire(error_class: str, message: str, delay: float | None = None) -> BaseException:
    """Rebuild the exception the orchestrator acts on; any other becomes a RemoteError."""
    if error_class == "Retry":
        return Retry(delay, message)
    if error_class == "Cancelled":
        return Cancelled(message)
    if error_class == "JobTimeout":
        return JobTimeout(message)
    if error_class == "WorkerLost":
        return WorkerLost(message)
    return RemoteError(error_class, message)


def outcome_from_wire(reply: dict[str, Any], duration_s: float, queued_s: float) -> Outcome:
    """An Outcome from a wire reply (``{"ok": true, "value": ...}`` or an error)."""
    if reply.get("ok"):
        return Outcome.success(reply.get("value"), duration_s, queued_s)
    error_class = str(reply.get("error_class") or "RemoteError")
    message = str(reply.get("message") or "")
    delay = reply.get("delay")
    error = error_from_wire(error_class, message, delay if isinstance(delay, int | float) else None)
    backtrace = [str(line) for line in (reply.get("backtrace") or [])][-MAX_BACKTRACE_LINES:]
    return Outcome(ok=False, error=error, error_class=error_class, message=message,
                   backtrace=backtrace, duration_s=duration_s, queued_s=queued_s)


def value_reply(value: Any) -> bytes:
    """Encode a success reply; a result JSON cannot carry becomes a SerializationError reply."""
    try:
        return dumps({"ok": True, "value": value})
    except Exception as exc:
        return dumps(error_to_wire(exc))


def describe_exit(status: int | None) -> str:
    """Say how a process ended, from its raw ``waitpid`` status."""
    if status is None:
        return "its exit status is unknown"
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return f"it exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = "unknown signal"
    text = f"it was killed by signal {-code} ({name})"
    if -code == signal.SIGKILL:
        text += ": killed from outside, or by the kernel's out-of-memory killer"
    return text
