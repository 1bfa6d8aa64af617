"""Pipeline defaults, settable in one place, and the per-stage execution strategy.

``configure(queue_size=..., threads=..., ...)`` changes the defaults for every pipeline built
afterwards in this process (a test suite can call ``configure(deterministic=True)`` once in a
``conftest.py``). ``defaults()`` returns the current values. A stage's own options always win.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import PipelineDefinitionError

# A stage's input channel holds this many items unless the stage says otherwise. Large enough
# that threads hand items over in runs rather than one GIL switch per item (queues under a few
# hundred cost throughput, see bench/pipeline/RESULTS.md), small enough to bound memory.
DEFAULT_QUEUE_SIZE = 1000
DEFAULT_THREADS = 8
DEFAULT_ASYNCIO = 100
DEFAULT_PROCESSES = 2
DEFAULT_FORKS = 2
# Items per task sent to a process or fork stage: one pipe round trip carries this many.
DEFAULT_CHUNK_SIZE = 256
# An ordered stage lets at most this many items be taken ahead of the oldest unfinished one.
DEFAULT_REORDER_WINDOW = 1000
# A process stage fails after this many worker deaths within RESTART_WINDOW_S.
DEFAULT_MAX_RESTARTS = 5
DEFAULT_RESTART_WINDOW_S = 60.0
# After a failure or cancel, how long run() waits for threads stuck in user code before
# returning anyway (they are daemon threads; their late output is discarded).
DEFAULT_SHUTDOWN_GRACE_S = 2.0
DEFAULT_HUD_INTERVAL_S = 0.25

STRATEGIES = ("inline", "threads", "asyncio", "processes", "forks", "interpreters", "distributed")
IN_PROCESS = frozenset({"inline", "threads", "asyncio"})
OUT_OF_PROCESS = frozenset({"processes", "forks", "interpreters"})


@dataclass(frozen=True)
class Defaults:
    """Process-wide pipeline defaults; see :func:`configure`."""

    queue_size: int = DEFAULT_QUEUE_SIZE
    threads: int = DEFAULT_THREADS
    asyncio: int = DEFAULT_ASYNCIO
    processes: int = DEFAULT_PROCESSES
    forks: int = DEFAULT_FORKS
    chunk_size: int = DEFAULT_CHUNK_SIZE
    reorder_window: int = DEFAULT_REORDER_WINDOW
    max_restarts: int = DEFAULT_MAX_RESTARTS
    restart_window_s: float = DEFAULT_RESTART_WINDOW_S
    shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S
    hud_interval_s: float = DEFAULT_HUD_INTERVAL_S
    ordered: bool = False
    deterministic: bool = False


_current = Defaults()


def defaults() -> Defaults:
    """The defaults in force now."""
    return _current


def configure(**changes: Any) -> Defaults:
    """Change pipeline defaults for this process; returns the previous values (to restore)."""
    global _current
    known = {f.name for f in dataclasses.fields(Defaults)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise TypeError(f"unknown pipeline defaults {unknown}; known: {', '.join(sorted(known))}")
    previous = _current
    _current = dataclasses.replace(_current, **changes)
    return previous


def restore(previous: Defaults) -> None:
    """Put back defaults returned by :func:`configure`."""
    global _current
    _current = previous


@dataclass(frozen=True)
class Strategy:
    """Where a stage's code runs: ``kind`` with ``size`` workers, maybe in a shared context."""

    kind: str = "inline"
    size: int = 1
    context: str | None = None
    requested: str = ""  # what the user asked for, when a fallback replaced it

    @property
    def label(self) -> str:
        text = self.kind if self.kind == "inline" else f"{self.kind}={self.size}"
        if self.context:
            text += f" @{self.context}"
        return text + (f" (asked {self.requested})" if self.requested else "")


def parse_strategy(stage: str, options: dict[str, Any]) -> Strategy:
    """Turn ``threads=4`` / ``processes=True`` / ``distributed="queue"`` options into a Strategy.

    Pops the strategy keys from ``options``. At most one may be given.
    """
    given = {k: options.pop(k) for k in STRATEGIES if k in options}
    given = {k: v for k, v in given.items() if v is not None and v is not False}
    if len(given) > 1:
        raise PipelineDefinitionError(
            f"stage {stage!r} has several execution strategies ({', '.join(sorted(given))}); "
            "pick one"
        )
    if not given:
        return Strategy()
    kind, value = next(iter(given.items()))
    if kind == "inline":
        return Strategy()
    if kind == "distributed":
        if value != "queue":
            raise PipelineDefinitionError(
                f"stage {stage!r}: distributed={value!r} is not supported; use distributed='queue'"
            )
        return Strategy("distributed", _current.threads)
    default_size = getattr(_current, kind, _current.processes)
    if value is True:
        value = default_size
    if not isinstance(value, int) or value < 1:
        raise PipelineDefinitionError(
            f"stage {stage!r}: {kind}= must be a positive integer (or True for the default "
            f"{default_size}), got {value!r}"
        )
    if kind == "interpreters":  # the documented fallback; PoolDriver logs it (pool.py)
        return Strategy("processes", value, requested=f"interpreters={value}")
    return Strategy(kind, value)
