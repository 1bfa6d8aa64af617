"""Job functions for the executor tests, under the names the Ruby sidecar's classes also use.

They run in this process (asyncio, thread), in forked children (process, fork) and in a Python
sidecar (http), so they talk back only through return values and marker files.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import pathlib
import time
from typing import Any

from conveyor.errors import Retry

HUGE_ALLOCATION = 1 << 60  # bytes: no machine has this, so the allocation raises MemoryError

STATE: dict[str, Any] = {"init_calls": 0}


def _touch(marker: str | None) -> None:
    if marker:
        pathlib.Path(marker).write_text(str(os.getpid()))


def echo(*args: Any, **kwargs: Any) -> Any:
    return [list(args), kwargs] if kwargs else list(args)


def boom(message: str) -> None:
    raise ValueError(message)


def sleeper(seconds: float, marker: str | None = None) -> float:
    _touch(marker)
    time.sleep(seconds)
    return seconds


async def async_sleeper(seconds: float, marker: str | None = None) -> float:
    _touch(marker)
    await asyncio.sleep(seconds)
    return seconds


def interval(seconds: float) -> list[float]:
    start = time.time()
    time.sleep(seconds)
    return [start, time.time()]


async def async_interval(seconds: float) -> list[float]:
    start = time.time()
    await asyncio.sleep(seconds)
    return [start, time.time()]


def exit_now(code: int) -> None:
    os._exit(code)


def segfault() -> None:
    ctypes.string_at(0)


def hog() -> None:
    bytearray(HUGE_ALLOCATION)


def pid() -> int:
    return os.getpid()


def retry_later(delay: float) -> None:
    raise Retry(delay, "not yet")


def init_counter() -> None:
    STATE["init_calls"] += 1


def init_state() -> list[int]:
    return [STATE["init_calls"], os.getpid()]


def hold_memory(megabytes: int) -> int:
    STATE.setdefault("held", []).append(bytearray(megabytes * 1024 * 1024))
    return os.getpid()


def not_json() -> Any:
    return {1, 2}


FUNCTIONS: dict[str, Any] = {
    "Echo": echo,
    "Boom": boom,
    "Sleeper": sleeper,
    "Interval": interval,
    "Exit": exit_now,
    "Segfault": segfault,
    "Hog": hog,
    "Pid": pid,
    "RetryLater": retry_later,
    "InitState": init_state,
    "HoldMemory": hold_memory,
    "NotJson": not_json,
}

ASYNC_FUNCTIONS: dict[str, Any] = {**FUNCTIONS, "Sleeper": async_sleeper,
                                   "Interval": async_interval}


def whoami() -> list[Any]:
    from conveyor.context import current_job

    job = current_job()
    return [job.jid, job.name, job.attempt]


def cow_probe() -> dict[str, int]:
    """Read the whole shared table, then report this process's memory from smaps_rollup."""
    table = STATE["table"]
    if isinstance(table, bytes | bytearray):
        total = sum(table[i] for i in range(0, len(table), 4096))
    else:
        total = sum(row[0] for row in table)
    return {"checksum": total, **smaps_rollup()}


def smaps_rollup(pid: int | str = "self") -> dict[str, int]:
    """Rss, Pss, shared and private memory in kB, from /proc/<pid>/smaps_rollup."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[-1] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1])
    return {
        "rss_kb": fields.get("Rss", 0),
        "pss_kb": fields.get("Pss", 0),
        "shared_kb": fields.get("Shared_Clean", 0) + fields.get("Shared_Dirty", 0),
        "private_kb": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0),
    }


FUNCTIONS.update({"WhoAmI": whoami, "CowProbe": cow_probe})
ASYNC_FUNCTIONS.update({"WhoAmI": whoami, "CowProbe": cow_probe})
