"""What the API process holds: the app and facade, the authenticator, and a throughput history.

The per-second history is kept honestly simple: this process samples Sidekiq's lifetime
``stat:processed`` and ``stat:failed`` counters every ``history_sample_s`` through the facade and
keeps the rates between consecutive samples (five minutes by default). Workers flush those
counters on each heartbeat (every 2 s), so one-second rates come in steps of the heartbeat;
sums over a minute are exact. A restarted API process starts with an empty history.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import redis

from ..admin import Inspector, Memory
from ..app import App
from ..errors import BrokerError
from .auth import Authenticator
from .config import HISTORY_POINTS, MEMORY_CHECK_INTERVAL_S, ApiConfig
from .errors import ApiError
from .models import History, HistoryPoint

log = logging.getLogger("conveyor.api")
RETRY_AFTER_FULL_S = 5  # what a refused producer is told to wait while Redis is nearly full
REREAD_FRACTION = 100  # read Redis's memory again once admitted jobs may fill 1/100 of it
JOB_OVERHEAD_BYTES = 512  # a job's status record and list entry, besides its arguments


class ThroughputHistory:
    """Rates of processed and failed jobs between consecutive counter samples."""

    def __init__(self, interval_s: float, points: int = HISTORY_POINTS) -> None:
        self.interval_s = interval_s
        self._samples: deque[tuple[float, int, int]] = deque(maxlen=points + 1)
        self._lock = threading.Lock()

    def add(self, t: float, processed: int, failed: int) -> None:
        with self._lock:
            self._samples.append((t, processed, failed))

    def history(self) -> History:
        with self._lock:
            samples = list(self._samples)
        points = []
        for (t0, p0, f0), (t1, p1, f1) in itertools.pairwise(samples):
            dt = t1 - t0
            if dt <= 0:
                continue
            # a counter that went down was reset (FLUSHALL, a new Redis): no negative rates
            processed, failed = max(0, p1 - p0), max(0, f1 - f0)
            points.append(HistoryPoint(t=round(t1, 3), processed=processed, failed=failed,
                                       processed_per_s=round(processed / dt, 3),
                                       failed_per_s=round(failed / dt, 3)))
        return History(interval_s=self.interval_s, points=points)


@dataclass
class ApiState:
    """Everything a request handler needs, stored on ``app.state.api``."""

    config: ApiConfig
    app: App
    inspector: Inspector
    auth: Authenticator
    history: ThroughputHistory
    job_locks: dict[str, threading.Lock] = field(default_factory=dict)
    locks_guard: threading.Lock = field(default_factory=threading.Lock)
    memory_guard: threading.Lock = field(default_factory=threading.Lock)
    memory_seen: tuple[float, Memory] | None = None
    admitted_bytes: int = 0  # estimated bytes of the jobs admitted since that reading

    def admit_submissions(self, incoming_bytes: int = 0) -> None:
        """Back-pressure before Redis is full: raise 503 (with Retry-After) while Redis would
        use more than ``memory_high_water`` of its ``maxmemory`` with these jobs.

        Under ``noeviction`` a full Redis refuses writes, and every producer then meets errors
        in the middle of its work (a batch half in, a worker unable even to register). Refusing
        new submissions a little earlier keeps headroom for workers to drain the backlog. The
        reading of ``INFO memory``, shared by all requests, is taken again after
        ``MEMORY_CHECK_INTERVAL_S`` or once the jobs admitted since would fill a hundredth of
        ``maxmemory``; in between, those jobs' estimated bytes count as used (without that, fast
        producers of 10 KB jobs ran Redis past ``maxmemory`` within one half-second reading).
        """
        now = time.monotonic()
        with self.memory_guard:
            seen = self.memory_seen
            if (seen is None or now - seen[0] >= MEMORY_CHECK_INTERVAL_S
                    or self.admitted_bytes * REREAD_FRACTION > seen[1].max_bytes):
                seen = (now, self.inspector.memory())
                self.memory_seen = seen
                self.admitted_bytes = 0
            memory = seen[1]
            projected = memory.used_bytes + self.admitted_bytes + incoming_bytes
            if not memory.max_bytes or projected < self.config.memory_high_water * memory.max_bytes:
                self.admitted_bytes += incoming_bytes
                return
        raise ApiError(
            503, "redis_full",
            f"Redis uses {memory.used_bytes} of its {memory.max_bytes} bytes "
            f"({memory.fraction:.0%}; with the jobs just admitted and these, over the "
            f"{self.config.memory_high_water:.0%} high-water mark): new jobs are refused until "
            "workers drain the backlog",
            headers={"Retry-After": str(RETRY_AFTER_FULL_S)})

    def lock_for(self, key: str) -> threading.Lock:
        """A lock per idempotency key, so one process never enqueues a key twice."""
        with self.locks_guard:
            if len(self.job_locks) > 10_000:
                self.job_locks = {k: v for k, v in self.job_locks.items() if v.locked()}
            return self.job_locks.setdefault(key, threading.Lock())

    def sample(self) -> None:
        stats = self.inspector.stats()
        self.history.add(time.time(), stats.processed, stats.failed)

    async def sample_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.sample)
            except (redis.RedisError, BrokerError, OSError) as exc:  # Redis down: try later
                log.debug("history sample failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.history.interval_s)
