"""The recent-run summaries workers publish (``conveyor.latency``, ``worker/summary.py``):
bucket maths against exact percentiles, the rolling window driven by a hand clock, merging
what several workers wrote, and the summary a real worker publishes with its heartbeat."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from conveyor import latency
from conveyor.admin import Inspector
from conveyor.worker.summary import RunSummary

sys.path.insert(0, str(Path(__file__).resolve().parent / "api"))
from api_helpers import WorkerThread, make_app, wait_until

# half a bucket of a log scale with ten buckets per decade, as a ratio
HALF_BUCKET = 10 ** (1 / (2 * latency.BUCKETS_PER_DECADE))


def exact(values: list[float], q: float) -> float:
    """Nearest-rank percentile, the model the buckets approximate."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@given(st.lists(st.floats(min_value=latency.MIN_S, max_value=latency.MAX_S / 10),
                min_size=1, max_size=200),
       st.sampled_from([0.5, 0.95, 0.99]))
def test_quantiles_are_within_half_a_bucket_of_the_exact_percentile(
        values: list[float], q: float) -> None:
    buckets: latency.Buckets = {}
    for v in values:
        i = latency.bucket_of(v)
        buckets[i] = buckets.get(i, 0) + 1
    got = latency.quantile(buckets, q)
    want = exact(values, q)
    assert got is not None
    assert want / HALF_BUCKET <= got * (1 + 1e-9) and got <= want * HALF_BUCKET * (1 + 1e-9)


def test_bucket_edges_and_extremes() -> None:
    assert latency.BUCKET_COUNT == 91
    assert latency.bucket_of(0.0) == 0 and latency.bucket_of(-1.0) == 0
    assert latency.bucket_of(float("nan")) == 0
    assert latency.bucket_of(10 * latency.MAX_S) == latency.BUCKET_COUNT - 1
    low, high = latency.bucket_bounds(latency.bucket_of(0.25))
    assert low <= 0.25 < high
    assert latency.quantile({}, 0.5) is None
    assert latency.quantile({0: 3}, 0.99) == latency.MIN_S


@given(st.floats(min_value=latency.MIN_S, max_value=latency.MAX_S, exclude_min=True,
                 exclude_max=True))
def test_a_duration_lands_in_the_bucket_whose_bounds_hold_it(seconds: float) -> None:
    low, high = latency.bucket_bounds(latency.bucket_of(seconds))
    assert low <= seconds < high


def test_a_bucket_starts_at_its_lower_bound() -> None:
    assert latency.bucket_of(math.nextafter(latency.MIN_S, 1.0)) == 1  # MIN_S itself: bucket 0
    for index in range(2, latency.BUCKET_COUNT):
        low = latency.bucket_bounds(index)[0]
        assert latency.bucket_of(low) == index
        assert latency.bucket_of(math.nextafter(low, 0.0)) == index - 1


def test_enqueued_at_in_seconds_or_sidekiq_8_milliseconds() -> None:
    assert latency.enqueued_seconds({"enqueued_at": 1_700_000_000.5}) == 1_700_000_000.5
    assert latency.enqueued_seconds({"enqueued_at": 1_700_000_000_500}) == 1_700_000_000.5
    assert latency.enqueued_seconds({"enqueued_at": True}) is None
    assert latency.enqueued_seconds({}) is None


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class RunOutcome:
    duration_s: float


@dataclass
class StartedJob:
    data: dict[str, Any] = field(default_factory=dict)


def test_the_window_forgets_runs_older_than_a_minute() -> None:
    clock, wall = FakeClock(), FakeClock(2_000_000_000.0)
    summary = RunSummary(clock=clock, wall_clock=wall)
    summary.job_finished(StartedJob({"enqueued_at": wall.now - 2.0}), None, RunOutcome(0.5),
                         "completed")
    for _ in range(8):
        summary.job_finished(StartedJob(), None, RunOutcome(0.01), "completed")
    summary.job_finished(StartedJob(), None, RunOutcome(3.0), "dead")
    summary.job_dead_lettered("default", "MalformedJob")
    first = summary.wire()
    assert first["outcomes"] == {"completed": 9, "dead": 1}
    assert first["dead_lettered"] == {"MalformedJob": 1}
    assert sum(n for _, n in first["run"]) == 10 and sum(n for _, n in first["wait"]) == 1
    # the wait ends where the run began: finished now, after 0.5 s of a job enqueued 2 s ago
    wait = latency.quantile({i: n for i, n in first["wait"]}, 0.5)
    assert wait is not None and 1.5 / HALF_BUCKET <= wait <= 1.5 * HALF_BUCKET
    clock.now += 30
    summary.job_finished(StartedJob(), None, RunOutcome(0.5), "retry")
    assert summary.wire()["outcomes"] == {"completed": 9, "dead": 1, "retry": 1}
    clock.now += latency.WINDOW_S - 5  # the first slice is older than the window now
    late = summary.wire()
    assert late["outcomes"] == {"retry": 1} and late["dead_lettered"] == {}
    clock.now += latency.WINDOW_S
    assert summary.wire()["run"] == [] and len(summary._window.slices) == 0
    json.dumps(first)  # the published form is plain JSON


def test_merge_adds_workers_and_skips_what_it_cannot_read() -> None:
    clock = FakeClock()
    a, b = RunSummary(clock=clock), RunSummary(clock=clock)
    for _ in range(99):
        a.job_finished(StartedJob(), None, RunOutcome(0.01), "completed")
    b.job_finished(StartedJob(), None, RunOutcome(10.0), "completed")
    b.job_finished(StartedJob(), None, RunOutcome(10.0), "completed")
    bad = [{"layout": "other"}, "not a dict", {"layout": latency.LAYOUT, "run": [[999, 5],
                                                                                 [3, -1], "x"]}]
    merged = latency.merge([a.wire(), b.wire(), *bad])
    assert merged["reporting"] == 3 and merged["outcomes"] == {"completed": 101}
    assert sum(merged["run"].values()) == 101
    assert latency.quantile(merged["run"], 0.5) == latency.quantile({latency.bucket_of(0.01): 1},
                                                                    0.5)
    p99 = latency.quantile(merged["run"], 0.99)
    assert p99 is not None and 10.0 / HALF_BUCKET <= p99 <= 10.0 * HALF_BUCKET


def test_a_worker_publishes_its_summary_and_the_facade_reads_it(redis_url: str) -> None:
    app = make_app(redis_url)
    ins = Inspector(app.client.sync)
    for _ in range(4):
        app.enqueue("slow", args=[0.2])
    app.enqueue("echo")
    with WorkerThread(app, concurrency=5):
        recent = wait_until(lambda: (r := ins.recent_runs()).runs == 5 and r,
                            what="five runs in the published summary")
        (proc,) = ins.processes()
    assert proc.summary["layout"] == latency.LAYOUT
    assert recent.reporting == 1 and recent.window_s == latency.WINDOW_S
    assert recent.outcomes == {"completed": 5}
    assert recent.run_p50_s is not None and recent.run_p99_s is not None
    assert 0.2 / HALF_BUCKET <= recent.run_p50_s <= 0.3 * HALF_BUCKET
    assert recent.run_p99_s >= recent.run_p50_s
    assert recent.wait_p50_s is not None and recent.wait_p50_s < 15
    app.close()
