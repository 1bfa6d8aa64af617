"""Counters kept while a pipeline runs, and the snapshots ``run()`` and the HUD report.

Each worker (thread, coroutine or process feeder) owns a :class:`WorkerStats` that only it
writes, so the hot path takes no lock; a snapshot sums them. Latency goes into a log-bucketed
histogram (8 buckets per doubling, about 9 % resolution) of fixed size, so percentiles over a
whole run of any length cost constant memory.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

BUCKETS_PER_OCTAVE = 8
HISTOGRAM_BUCKETS = 8 * 48  # 1 ns .. about 3 days
_NS_PER_S = 1e9


class Histogram:
    """Log-bucketed latency histogram; ``record`` takes seconds."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts = [0] * HISTOGRAM_BUCKETS

    def record(self, seconds: float) -> None:
        ns = seconds * _NS_PER_S
        index = int(math.log2(ns) * BUCKETS_PER_OCTAVE) if ns > 1.0 else 0
        self.counts[index if index < HISTOGRAM_BUCKETS else HISTOGRAM_BUCKETS - 1] += 1

    def merge(self, other: Histogram) -> None:
        for i, c in enumerate(other.counts):
            if c:
                self.counts[i] += c

    def percentile(self, p: float) -> float | None:
        """The ``p``-th percentile (0-100) in seconds, None when empty."""
        total = sum(self.counts)
        if not total:
            return None
        rank = max(1, math.ceil(total * p / 100))
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank:
                # the middle of the bucket, in seconds
                return float(2 ** ((i + 0.5) / BUCKETS_PER_OCTAVE) / _NS_PER_S)
        return None


class WorkerStats:
    """What one worker did; written only by that worker."""

    __slots__ = (
        "blocked_s",
        "busy_s",
        "current",
        "dead_lettered",
        "failed",
        "items_in",
        "items_out",
        "latency",
        "retried",
        "skipped",
    )

    def __init__(self) -> None:
        self.items_in = 0
        self.items_out = 0
        self.failed = 0
        self.retried = 0
        self.skipped = 0
        self.dead_lettered = 0
        self.busy_s = 0.0
        self.blocked_s = 0.0
        self.current = 0  # items taken and not finished
        self.latency = Histogram()


@dataclass
class StageStats:
    """One stage at one moment (or at the end of the run)."""

    name: str
    kind: str
    strategy: str
    workers: int
    items_in: int = 0
    items_out: int = 0
    failed: int = 0
    retried: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    in_flight: int = 0
    restarts: int = 0
    throughput_per_s: float = 0.0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    queue_depth: int = 0
    queue_peak: int = 0
    queue_capacity: int = 0
    blocked_s: float = 0.0
    busy_ratio: float = 0.0
    done: bool = False
    bottleneck: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class PipelineStats:
    """A whole run: every stage, the edges between them and the bottleneck."""

    name: str
    state: str  # running | paused | done | failed | cancelled
    elapsed_s: float
    stages: list[StageStats]
    edges: list[tuple[str, str]]
    bottleneck: str | None = None
    error: str | None = None
    outputs: int = 0

    def stage(self, name: str) -> StageStats:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage {name!r}; stages: {', '.join(s.name for s in self.stages)}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["edges"] = [list(e) for e in self.edges]
        return data

    def to_json(self, *, indent: bool = False) -> str:
        option = orjson.OPT_INDENT_2 if indent else 0
        return orjson.dumps(self.to_dict(), option=option).decode()


def summarise(
    name: str,
    kind: str,
    strategy: str,
    workers: list[WorkerStats],
    elapsed_s: float,
) -> StageStats:
    """Sum a stage's worker counters into a StageStats (queue and restarts filled by caller)."""
    s = StageStats(name=name, kind=kind, strategy=strategy, workers=len(workers))
    latency = Histogram()
    busy = 0.0
    for w in workers:
        s.items_in += w.items_in
        s.items_out += w.items_out
        s.failed += w.failed
        s.retried += w.retried
        s.skipped += w.skipped
        s.dead_lettered += w.dead_lettered
        s.blocked_s += w.blocked_s
        s.in_flight += w.current
        busy += w.busy_s
        latency.merge(w.latency)
    counted = s.items_out if kind == "producer" else s.items_in
    s.throughput_per_s = counted / elapsed_s if elapsed_s > 0 else 0.0
    working = max(0.0, busy - s.blocked_s)  # waiting on a full downstream queue is not work
    capacity = elapsed_s * max(1, len(workers))
    s.busy_ratio = min(1.0, working / capacity) if elapsed_s > 0 else 0.0
    for p, attr in ((50, "latency_p50_ms"), (95, "latency_p95_ms"), (99, "latency_p99_ms")):
        value = latency.percentile(p)
        setattr(s, attr, None if value is None else round(value * 1000, 4))
    s.blocked_s = round(s.blocked_s, 6)
    return s


def pick_bottleneck(stages: list[StageStats]) -> str | None:
    """The stage that limits the run: the busiest of its workers, then the fullest input queue.

    Producers are left out (a producer is always "busy" generating), as are stages that saw no
    items. Time blocked on a full downstream queue does not count as busy, so a fast stage
    stuck behind a slow one is not blamed.
    """
    best: tuple[float, float] | None = None
    name = None
    for s in stages:
        if s.kind == "producer" or not s.items_in:
            continue
        fill = s.queue_peak / s.queue_capacity if s.queue_capacity else 0.0
        key = (round(s.busy_ratio, 2), fill)
        if best is None or key > best:
            best, name = key, s.name
    return name
