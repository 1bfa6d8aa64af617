"""Recent-latency summaries: what each worker publishes so the facade can give percentiles.

Prometheus histograms live in each worker's own registry and are only seen by a scraper. The
HUD, the dashboard and the API's ``/metrics`` read Redis through the facade instead, so every
worker also keeps a small summary of its recent runs and writes it into its Sidekiq process hash
(field ``summary``) on each heartbeat; the facade merges the summaries of the live workers.

A summary is bounded whatever the load: durations are counted in log-spaced buckets
(``BUCKETS_PER_DECADE`` per power of ten from ``MIN_S`` up to ``MAX_S``; a quantile read from
them is within about 12 % of the true value), kept in ``WINDOW_S / SLICE_S`` time slices that
are dropped as they age. The wire form is sparse: only non-empty buckets, as ``[index, count]``
pairs, so an idle worker publishes a few bytes and a busy one at most a few kilobytes.

This module is pure (no Redis, no clock of its own): the worker's observer
(``worker/summary.py``) feeds it and the facade (``admin.py``) merges and reads it.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from typing import Any

MIN_S = 1e-4  # durations below 100 µs all land in bucket 0
MAX_S = 1e5  # about 28 hours; longer durations land in the last bucket
BUCKETS_PER_DECADE = 10
BUCKET_COUNT = round(math.log10(MAX_S / MIN_S) * BUCKETS_PER_DECADE) + 1
WINDOW_S = 60.0  # how far back a summary looks
SLICE_S = 10.0  # granularity of the window: a summary covers the last 50 to 60 seconds
LAYOUT = f"log10/{BUCKETS_PER_DECADE}@{MIN_S:g}"  # summaries with another layout are not merged
MILLISECOND_EPOCH_MIN = 10**11  # an integer timestamp above this is in ms (year 5138 in s)

Buckets = dict[int, int]


def enqueued_seconds(data: Mapping[str, Any]) -> float | None:
    """A payload's ``enqueued_at`` in epoch seconds: float seconds (Sidekiq 6/7, Conveyor) or
    integer milliseconds (Sidekiq 8); None when absent or not a number."""
    value = data.get("enqueued_at")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int) and value > MILLISECOND_EPOCH_MIN:
        return value / 1000.0
    return float(value)


def bucket_bounds(index: int) -> tuple[float, float]:
    """(lower, upper) seconds of a bucket."""
    if index <= 0:
        return 0.0, MIN_S
    return (MIN_S * 10 ** ((index - 1) / BUCKETS_PER_DECADE),
            MIN_S * 10 ** (index / BUCKETS_PER_DECADE))


# The lower bound of every bucket from 1 on: the bucket of a duration above MIN_S is the number
# of these at or below it, one C call (``bisect_right(LOWER_BOUNDS, seconds)``) where a log10 was
# a Python call per job, and exactly the bucket whose bucket_bounds() hold it.
LOWER_BOUNDS = tuple(bucket_bounds(i)[0] for i in range(1, BUCKET_COUNT))


def bucket_of(seconds: float) -> int:
    """The bucket index of a duration (0 for anything up to ``MIN_S``)."""
    if not seconds > MIN_S:  # also catches NaN
        return 0
    return bisect_right(LOWER_BOUNDS, seconds)


def add(into: Buckets, other: Mapping[int, int]) -> Buckets:
    for index, count in other.items():
        into[index] = into.get(index, 0) + count
    return into


def quantile(buckets: Mapping[int, int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of the counted durations, None when nothing was counted.

    Reads the bucket holding the nearest rank and returns its geometric midpoint (bucket 0:
    its upper bound), so the answer is within half a bucket of the true value.
    """
    total = sum(buckets.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index in sorted(buckets):
        seen += buckets[index]
        if seen >= rank:
            low, high = bucket_bounds(index)
            return high if low == 0.0 else math.sqrt(low * high)
    return None  # unreachable: the ranks add up to total


def encode(buckets: Mapping[int, int]) -> list[list[int]]:
    return [[i, n] for i, n in sorted(buckets.items()) if n > 0]


def decode(pairs: Any) -> Buckets:
    """Buckets from their wire form; anything malformed is skipped, never raised."""
    out: Buckets = {}
    if not isinstance(pairs, list):
        return out
    for pair in pairs:
        if (isinstance(pair, list) and len(pair) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in pair)
                and 0 <= pair[0] < BUCKET_COUNT and pair[1] > 0):
            out[pair[0]] = out.get(pair[0], 0) + pair[1]
    return out


class Slice:
    """The counts of one ``SLICE_S`` stretch of time."""

    __slots__ = ("dead_lettered", "number", "outcomes", "run", "wait")

    def __init__(self, number: int) -> None:
        self.number = number
        self.run: Buckets = {}
        self.wait: Buckets = {}
        self.outcomes: dict[str, int] = {}
        self.dead_lettered: dict[str, int] = {}


class Window:
    """Rolling window of slices; not thread-safe (the caller holds a lock)."""

    def __init__(self, window_s: float = WINDOW_S, slice_s: float = SLICE_S) -> None:
        self.window_s = window_s
        self.slice_s = slice_s
        self.slices_kept = max(1, round(window_s / slice_s))
        self.slices: list[Slice] = []

    def current(self, now_s: float) -> Slice:
        number = math.floor(now_s / self.slice_s)
        self._expire(number)
        if not self.slices or self.slices[-1].number != number:
            self.slices.append(Slice(number))
        return self.slices[-1]

    def _expire(self, number: int) -> None:
        self.slices = [s for s in self.slices if s.number > number - self.slices_kept]

    def wire(self, now_s: float) -> dict[str, Any]:
        """The summary of the window ending at ``now_s``, in the published (JSON) form."""
        self._expire(math.floor(now_s / self.slice_s))
        run: Buckets = {}
        wait: Buckets = {}
        outcomes: dict[str, int] = {}
        dead: dict[str, int] = {}
        for s in self.slices:
            add(run, s.run)
            add(wait, s.wait)
            _add_counts(outcomes, s.outcomes)
            _add_counts(dead, s.dead_lettered)
        return {"layout": LAYOUT, "window_s": self.window_s, "run": encode(run),
                "wait": encode(wait), "outcomes": outcomes, "dead_lettered": dead}


def _add_counts(into: dict[str, int], other: Mapping[str, Any]) -> None:
    for key, n in other.items():
        if isinstance(n, int) and not isinstance(n, bool) and n > 0:
            into[str(key)] = into.get(str(key), 0) + n


def merge(summaries: Iterable[Any]) -> dict[str, Any]:
    """Merge published summaries (as read from Redis) into buckets and counts.

    Returns ``run`` and ``wait`` buckets, ``outcomes`` and ``dead_lettered`` counts, how many
    summaries were merged (``reporting``) and the longest window among them.
    """
    run: Buckets = {}
    wait: Buckets = {}
    outcomes: dict[str, int] = {}
    dead: dict[str, int] = {}
    reporting = 0
    window_s = 0.0
    for s in summaries:
        if not isinstance(s, dict) or s.get("layout") != LAYOUT:
            continue
        reporting += 1
        add(run, decode(s.get("run")))
        add(wait, decode(s.get("wait")))
        for name, into in (("outcomes", outcomes), ("dead_lettered", dead)):
            if isinstance(s.get(name), dict):
                _add_counts(into, s[name])
        w = s.get("window_s")
        if isinstance(w, int | float) and not isinstance(w, bool):
            window_s = max(window_s, float(w))
    return {"run": run, "wait": wait, "outcomes": outcomes, "dead_lettered": dead,
            "reporting": reporting, "window_s": window_s}
