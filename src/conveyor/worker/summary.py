"""The worker's recent-run summary: an observer the heartbeat publishes (``conveyor.latency``).

Every worker has one, whatever its flags, so ``conveyor top``, the dashboard and the API's
``/metrics`` can show run-time and wait percentiles of finished jobs through the facade without
scraping each worker. It records, per ``latency.SLICE_S`` slice of the last ``latency.WINDOW_S``:

* the run time of each finished run (any outcome, like ``conveyor_job_duration_seconds``);
* the wait from ``enqueued_at`` to the start of each run (like ``conveyor_job_wait_seconds``),
  counted when the run ends;
* runs by outcome, and jobs dead-lettered without running by reason.

Observer calls come from the worker's loop and :meth:`wire` from the heartbeat thread, hence
the lock. The clock is injected so tests can move the window by hand. The current slice is kept
until its time is up, so a job does not pay for the window's expiry scan (at 10,000 jobs a
second that scan was about a tenth of the event loop's time).
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_right
from collections.abc import Callable
from typing import Any

from .. import latency

BOUNDS, MIN_S = latency.LOWER_BOUNDS, latency.MIN_S


class RunSummary:
    """A bounded summary of the runs of the last minute (see ``conveyor.latency``)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.wall_clock = wall_clock
        self._window = latency.Window()
        self._lock = threading.Lock()
        self._slice: latency.Slice | None = None
        self._slice_begins = self._slice_ends = 0.0  # clock times self._slice is current in

    def job_finished(self, job: Any, spec: Any, outcome: Any, result: str) -> None:
        # Once per job on the worker's loop (the wait is counted here too, not at the start: one
        # call instead of two), so the common cases are inlined: a float ``enqueued_at`` and a
        # slice that is still current. The run started ``duration_s`` before now.
        duration = outcome.duration_s
        index = bisect_right(BOUNDS, duration) if duration > MIN_S else 0  # bucket_of
        value = job.data.get("enqueued_at")
        enqueued = value if type(value) is float else latency.enqueued_seconds(job.data)
        wait_index = -1
        if enqueued is not None:
            wait = self.wall_clock() - duration - enqueued
            wait_index = bisect_right(BOUNDS, wait) if wait > MIN_S else 0
        with self._lock:
            s = self._slice
            if s is None or not self._slice_begins <= self.clock() < self._slice_ends:
                s = self._current()
            s.run[index] = s.run.get(index, 0) + 1
            s.outcomes[result] = s.outcomes.get(result, 0) + 1
            if wait_index >= 0:
                s.wait[wait_index] = s.wait.get(wait_index, 0) + 1

    def job_dead_lettered(self, queue: str, reason: str) -> None:
        with self._lock:
            s = self._current()
            s.dead_lettered[reason] = s.dead_lettered.get(reason, 0) + 1

    def _current(self) -> latency.Slice:
        """The window's current slice (the caller holds the lock)."""
        now = self.clock()
        if self._slice is None or not self._slice_begins <= now < self._slice_ends:
            self._slice = self._window.current(now)
            self._slice_begins = self._slice.number * self._window.slice_s
            self._slice_ends = self._slice_begins + self._window.slice_s
        return self._slice

    def wire(self) -> dict[str, Any]:
        """The summary as the heartbeat publishes it (JSON-ready)."""
        with self._lock:
            return self._window.wire(self.clock())
