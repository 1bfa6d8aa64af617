"""Small helpers for executor tests: await a condition, a job context like the worker's."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

POLL_S = 0.01  # how often a condition is checked; not a fixed wait


async def until(condition: Callable[[], bool], timeout_s: float = 10.0, what: str = "") -> None:
    """Wait until ``condition()`` is true, failing after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or condition}")
        await asyncio.sleep(POLL_S)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its parent to reap it is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@dataclass
class Ctx:
    """What the worker hands an executor as ``Task.context`` (see conveyor.context.JobContext)."""

    jid: str
    name: str = "job"
    queue: str = "default"
    attempt: int = 1
    cancelled: bool = False


def max_overlap(intervals: list[list[float]]) -> int:
    """The largest number of [start, end] intervals open at one instant."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = current = 0
    for _, delta in events:
        current += delta
        best = max(best, current)
    return best
