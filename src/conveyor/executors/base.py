"""The executor contract: where job code (and pipeline stage code) runs.

The orchestrator owns Redis, leases and backpressure; an executor only runs functions. Every
executor implements the same small async interface, so the worker and the pipeline engine can
use any of them, and one contract test suite checks them all:

* ``await start()`` once before use, ``await stop(grace_s)`` once at the end: running tasks get
  ``grace_s`` seconds to finish, then they are cancelled (or their process killed).
* ``await run(task) -> Outcome`` runs one task. It never raises for anything the task does: job
  errors, timeouts, a dead child process or a cancellation come back as a failed Outcome whose
  ``error`` is the exception (``JobTimeout``, ``WorkerLost``, ``Cancelled``...). At most
  ``capacity`` tasks run at once; extra calls wait their turn (time counted as ``queued_s``).
* ``cancel(key)`` asks a running or waiting task to stop, by its key (the job id).
* ``stats()`` reports in flight, capacity, completed, failed, restarts and time queued inside.

Functions are looked up by name in the ``functions`` mapping given at construction (a job
registry, or a pipeline's stages); a name is never imported from task data.
"""

from __future__ import annotations

import abc
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import Cancelled, UnknownJobType

MAX_BACKTRACE_LINES = 50


@dataclass(slots=True)
class Task:
    """One call to make: ``functions[name](*args, **kwargs)`` within ``timeout`` seconds."""

    name: str
    args: list[Any] | tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    key: str = ""
    context: Any = None
    submitted: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class Outcome:
    """What came of a task: a value, or an error with its class, message and backtrace."""

    ok: bool
    value: Any = None
    error: BaseException | None = None
    error_class: str = ""
    message: str = ""
    backtrace: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    queued_s: float = 0.0

    @classmethod
    def success(cls, value: Any, duration_s: float = 0.0, queued_s: float = 0.0) -> Outcome:
        return cls(True, value, None, "", "", [], duration_s, queued_s)  # positional: per job

    @classmethod
    def failure(
        cls,
        error: BaseException,
        duration_s: float = 0.0,
        queued_s: float = 0.0,
        backtrace: list[str] | None = None,
    ) -> Outcome:
        if backtrace is None:
            backtrace = format_backtrace(error)
        return cls(
            ok=False,
            error=error,
            error_class=type(error).__name__,
            message=str(error),
            backtrace=backtrace,
            duration_s=duration_s,
            queued_s=queued_s,
        )


def format_backtrace(error: BaseException) -> list[str]:
    """Backtrace lines, innermost last, in the ``path:line:in `func'`` shape Sidekiq shows."""
    frames = traceback.extract_tb(error.__traceback__)[-MAX_BACKTRACE_LINES:]
    return [f"{f.filename}:{f.lineno}:in `{f.name}'" for f in frames]


@dataclass(slots=True)
class ExecutorStats:
    """Counters every executor reports."""

    kind: str
    capacity: int
    in_flight: int = 0
    completed: int = 0
    failed: int = 0
    restarts: int = 0
    queued_s_total: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "capacity": self.capacity,
            "in_flight": self.in_flight,
            "completed": self.completed,
            "failed": self.failed,
            "restarts": self.restarts,
            "queued_s_total": round(self.queued_s_total, 6),
        }


class Executor(abc.ABC):
    """Base class: holds the function table, capacity and statistics."""

    kind: ClassVar[str] = "base"

    def __init__(self, functions: Mapping[str, Callable[..., Any]], capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"{self.kind} executor capacity must be at least 1, got {capacity}")
        self.functions = functions
        self.capacity = capacity
        self._stats = ExecutorStats(kind=self.kind, capacity=capacity)

    def lookup(self, name: str) -> Callable[..., Any]:
        try:
            return self.functions[name]
        except KeyError:
            raise UnknownJobType(name, self.functions.keys()) from None

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Prepare resources (pools, child processes, connections)."""

    @abc.abstractmethod
    async def run(self, task: Task) -> Outcome:
        """Run one task and report its outcome; never raise for the task's own failure."""

    def cancel(self, key: str) -> bool:
        """Ask the task with this key to stop; True if one was found."""
        return False

    async def stop(self, grace_s: float = 0.0) -> None:  # noqa: B027 - optional hook
        """Let running tasks finish for up to ``grace_s`` seconds, then stop them."""

    @property
    def in_flight(self) -> int:
        return self._stats.in_flight

    def stats(self) -> ExecutorStats:
        return self._stats

    def _record(self, outcome: Outcome) -> Outcome:
        if outcome.ok:
            self._stats.completed += 1
        else:
            self._stats.failed += 1
        self._stats.queued_s_total += outcome.queued_s
        return outcome


def cancelled_outcome(started: float, queued_s: float) -> Outcome:
    return Outcome.failure(Cancelled("the job was cancelled"), time.monotonic() - started, queued_s)
