"""Flow control across real worker processes (``flow_app``), checked from ledgers kept in Redis
with the Redis clock: rate accuracy with 8 workers, a concurrency limit across 4 workers and a
SIGKILLed holder, a breaker shared by 4 workers, and a group of 1,000 whose callback fires once
while workers are SIGKILLed.

These are the issue's acceptance tests, scaled to CI time (each says how), plus the rate test
at the issue's own size (10,000 jobs, measured for a minute); all are slow.
"""

from __future__ import annotations

import random
import time

import pytest
import redis
from flow_procs import STEADY_ENV, kill, processes, wait_until, worker

from conveyor import App, EnqueueRequest
from conveyor.admin import Inspector
from conveyor.flow import group
from conveyor.settings import Settings

RATE_LIMIT = 10  # flow_app's "rated": 10/s
RATE_JOBS = 150  # 15 s at the limit (the issue's 10,000 would take 17 minutes)
RATE_WORKERS = 8
WINDOW_TOLERANCE = 0  # on the Redis clock the sliding window is exact; see docs/flow-control.md
MEAN_TOLERANCE = 0.05
FULL_RATE_JOBS = 10_000  # the issue's size; at 10/s they would take 17 minutes...
FULL_RATE_MEASURE_S = 60.0  # ...so the starts of the first minute are measured, the rest purged
GROUP_SIZE = 1000
MAX_KILLS = 30
KILL_EVERY_S = 1.0
EVENT_RESOLUTION_S = 0.001  # breaker events are stamped in ms, ledger calls in µs


def ledger(r: redis.Redis, name: str) -> list[list[str]]:
    return [e.decode().split() for e in r.lrange(f"ledger:{name}", 0, -1)]


def max_in_window(times: list[float], window_s: float = 1.0) -> int:
    """The most starts in any half-open window [t, t + window_s)."""
    times, best, j = sorted(times), 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window_s:
            j += 1
        best = max(best, i - j + 1)
    return best


def mean_window_count(times: list[float], window_s: float = 1.0) -> float:
    """The average number of starts in a window [t, t + window_s), over every t for which the
    window lies within the run: neutral to bursty or evenly spread admissions."""
    lo, hi = min(times), max(times) - window_s
    covered = sum(max(0.0, min(s, hi + window_s) - max(s - window_s, lo)) for s in times)
    return covered / (hi - lo)


@pytest.mark.slow
@pytest.mark.chaos
def test_rate_limit_accuracy_with_8_workers(redis_url: str, redis_sync: redis.Redis) -> None:
    """T18 (short): 8 workers, 150 jobs limited to 10/s. The limiter's admissions (stamped on
    the Redis clock in the job's status) never exceed 10 in any 1 s window and average 10/s;
    the starts the jobs observe themselves add the executor's latency and are reported.
    Regression: a window check on the ms-floored clock once let 11 admissions into 1 s."""
    app = App(settings=Settings(redis_url=redis_url))
    with processes(*[worker(redis_url, concurrency=4, env=STEADY_ENV)
                      for _ in range(RATE_WORKERS)]):
        wait_until(lambda: redis_sync.scard("processes") >= RATE_WORKERS, 60, "8 workers")
        handles = app.enqueue_many([EnqueueRequest("rated") for _ in range(RATE_JOBS)])
        wait_until(lambda: redis_sync.llen("ledger:rated") >= RATE_JOBS, 60, "every job")
    admitted = [h.status().admitted_at or 0.0 for h in handles]
    rows = ledger(redis_sync, "rated")
    observed = [float(t) for _, t, _ in rows]
    pids = {pid for _, _, pid in rows}
    peak, mean = max_in_window(admitted), mean_window_count(admitted)
    lag = max(o - a for o, a in zip(sorted(observed), sorted(admitted), strict=True))
    print(f"\nrate: {RATE_JOBS} jobs on {len(pids)} workers in "
          f"{max(admitted) - min(admitted):.2f}s; admissions: max {peak} in any 1 s window, "
          f"mean {mean:.3f}/s (limit {RATE_LIMIT}/s); starts seen by the jobs: max "
          f"{max_in_window(observed)} in a window (executor latency up to {lag * 1000:.0f} "
          f"ms); retries {redis_sync.zcard('retry')}, dead {redis_sync.zcard('dead')}")
    assert all(admitted) and len({jid for jid, _, _ in rows}) == RATE_JOBS == len(rows)
    assert peak <= RATE_LIMIT + WINDOW_TOLERANCE
    assert abs(mean - RATE_LIMIT) <= RATE_LIMIT * MEAN_TOLERANCE
    assert len(pids) >= 2  # the limit held across processes, not inside one
    assert redis_sync.zcard("retry") == 0 and redis_sync.zcard("dead") == 0
    app.close()


def starts_in(rows: list[list[str]], since: float, span_s: float) -> list[tuple[str, float]]:
    return sorted(((jid, float(t)) for jid, t, _ in rows if since <= float(t) < since + span_s),
                  key=lambda row: row[1])


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_rate_limit_accuracy_at_the_issues_size(redis_url: str, redis_sync: redis.Redis) -> None:
    """T18 at full size: 8 worker processes, 10,000 queued jobs limited to 10/s. Measured from
    the ledger of start times the jobs write themselves (Redis clock) over the first 60 s: the
    mean rate is within 5 % of 10/s, and no 1 s window holds more starts than the limit plus
    the documented tolerance: the admissions of S more seconds, S being the spread of the
    jobs' admission-to-start latency in this run (the executor's dispatch can bunch starts the
    limiter spaced: docs/flow-control.md; under 1 s on a machine that is not overloaded, so
    then at most twice the limit). The limiter's own admissions (``admitted_at``) never exceed
    10 in any 1 s window. The jobs not started by then are purged (queue and schedule) before
    the workers stop."""
    app = App(settings=Settings(redis_url=redis_url))
    inspector = Inspector(app.client.sync)
    handles = []
    for _ in range(FULL_RATE_JOBS // 1000):
        handles += app.enqueue_many([EnqueueRequest("rated") for _ in range(1000)])
    assert len(handles) == FULL_RATE_JOBS
    with processes(*[worker(redis_url, concurrency=4, env=STEADY_ENV)
                      for _ in range(RATE_WORKERS)]):
        wait_until(lambda: redis_sync.scard("processes") >= RATE_WORKERS, 120, "8 workers")
        wait_until(lambda: redis_sync.llen("ledger:rated") >= 1, 60, "the first start")
        first = float(ledger(redis_sync, "rated")[0][1])
        wait_until(lambda: float(redis_sync.lindex("ledger:rated", -1).split()[1]) >= first
                   + FULL_RATE_MEASURE_S, FULL_RATE_MEASURE_S + 60, "a minute of starts")
        purged = inspector.purge("default") + inspector.delete("schedule")
        rows = ledger(redis_sync, "rated")
    measured = starts_in(rows, first, FULL_RATE_MEASURE_S)
    times = [t for _, t in measured]
    admitted = [app.handle(jid).status().admitted_at or 0.0 for jid, _ in measured]
    peak, mean = max_in_window(times), len(times) / FULL_RATE_MEASURE_S
    lags = [t - a for t, a in zip(times, admitted, strict=True)]
    spread = max(lags) - min(lags)
    tolerance = max_in_window(admitted, 1.0 + spread) - RATE_LIMIT  # admissions of S more s
    pids = {pid for _, _, pid in rows}
    print(f"\nrate at full size: {FULL_RATE_JOBS} jobs queued, {len(times)} started in the "
          f"first {FULL_RATE_MEASURE_S:.0f}s on {len(pids)} workers: max {peak} starts in any "
          f"1 s window (limit {RATE_LIMIT}, tolerance {tolerance}), mean {mean:.3f}/s; "
          f"admissions: max {max_in_window(admitted)} in 1 s; admission -> start "
          f"{min(lags) * 1000:.0f}-{max(lags) * 1000:.0f} ms; {purged} purged; retries "
          f"{redis_sync.zcard('retry')}, dead {redis_sync.zcard('dead')}")
    assert len({jid for jid, _ in measured}) == len(measured)  # each job started once
    assert all(admitted) and max_in_window(admitted) <= RATE_LIMIT + WINDOW_TOLERANCE
    assert min(lags) >= 0  # no job started before the limiter admitted it
    assert peak <= RATE_LIMIT + tolerance
    assert abs(mean - RATE_LIMIT) <= RATE_LIMIT * MEAN_TOLERANCE
    assert len(pids) >= 2 and purged >= FULL_RATE_JOBS - len(rows) - RATE_WORKERS * 4
    assert redis_sync.zcard("retry") == 0 and redis_sync.zcard("dead") == 0
    app.close()


def overlap_peak(rows: list[list[str]]) -> int:
    events = sorted((float(t), 1 if kind == "start" else -1) for _, kind, t, _ in rows)
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.slow
@pytest.mark.chaos
def test_concurrency_limit_across_4_workers_and_a_sigkilled_holder(
        redis_url: str, redis_sync: redis.Redis) -> None:
    app = App(settings=Settings(redis_url=redis_url))
    flow = Inspector(app.client.sync).flow
    handles = app.enqueue_many([EnqueueRequest("capped", args=[100]) for _ in range(30)])
    with processes(*[worker(redis_url, concurrency=3) for _ in range(4)]):
        wait_until(lambda: all(h.status().state == "completed" for h in handles), 90,
                   "every capped job")
    rows = ledger(redis_sync, "capped")
    peak, pids = overlap_peak(rows), {r[3] for r in rows}
    # a holder SIGKILLed mid-job: its slot is free again within its lease (1 s here)
    held = app.enqueue("held", args=[60_000])
    with processes(worker(redis_url, concurrency=1)) as (victim,):
        wait_until(lambda: redis_sync.llen("ledger:held") >= 1, 30, "the holder to start")
        (usage,) = [lim.usage for lim in flow.limits("held")]
        assert usage is not None and getattr(usage, "running", 0) == 1
        kill(victim)
        killed_at = time.monotonic()
        wait_until(lambda: flow.limits("held")[0].usage.running == 0,  # type: ignore[union-attr]
                   10, "the slot of the killed worker to free")
        freed_after = time.monotonic() - killed_at
    print(f"\nconcurrency: 30 jobs on {len(pids)} workers, at most {peak} at once (limit 3); "
          f"killed holder's slot free after {freed_after:.2f}s (lease 1 s)")
    assert peak == 3 and len(pids) >= 2
    assert freed_after <= 1.0 + 0.5  # the lease, plus one heartbeat of slack
    assert held.status().state in ("active", "enqueued")
    app.close()


@pytest.mark.slow
@pytest.mark.chaos
def test_breaker_opens_across_workers_probes_and_closes(redis_url: str,
                                                        redis_sync: redis.Redis) -> None:
    """T18 breaker: the dependency fails for a while, then recovers. Calls while open are
    only the half-open probes; recovery closes the breaker; nothing is dead-lettered."""
    app = App(settings=Settings(redis_url=redis_url))
    flow = Inspector(app.client.sync).flow
    redis_sync.set("ledger:down", "1")
    handles = app.enqueue_many([EnqueueRequest("remote") for _ in range(60)])
    workers_n, concurrency = 4, 2
    with processes(*[worker(redis_url, concurrency) for _ in range(workers_n)]):
        wait_until(lambda: flow.breaker("remote").opened_count >= 3, 30, "three openings")
        seconds, micros = redis_sync.time()
        recovered_at = seconds + micros / 1e6
        redis_sync.set("ledger:down", "0")
        wait_until(lambda: all(h.status().state == "completed" for h in handles), 60,
                   "every job after recovery")
    info = flow.breaker("remote")
    calls = [(float(t), d == "1") for _, t, d in ledger(redis_sync, "calls")]
    opened = sorted(ts for ts, st in info.events if st == "open")
    first_open = opened[0]
    before_open = sum(1 for t, _ in calls if t < first_open + EVENT_RESOLUTION_S)
    # while open (from each opening to its half-open time), no call may start
    events = sorted(info.events)
    open_spans = [(ts, next((t2 for t2, s2 in events if t2 > ts and s2 != "open"), ts))
                  for ts, st in events if st == "open"]
    while_open = [t for t, _ in calls if any(a + 0.05 < t < b for a, b in open_spans)]
    failing_after_first_open = sum(1 for t, down in calls if down and t > first_open + 0.05)
    closed_at = max(ts for ts, st in info.events if st == "closed")
    print(f"\nbreaker: {before_open} calls before it opened (threshold 5, {workers_n}x"
          f"{concurrency} slots); opened {info.opened_count} times; {failing_after_first_open} "
          f"failing probes after; closed {closed_at - recovered_at:.2f}s after recovery; "
          f"dead {redis_sync.zcard('dead')}")
    assert 5 <= before_open <= 5 + workers_n * concurrency - 1
    assert while_open == []
    assert failing_after_first_open <= info.opened_count - 1 + workers_n * concurrency
    assert info.state == "closed" and closed_at >= recovered_at
    assert redis_sync.zcard("dead") == 0
    app.close()


@pytest.mark.slow
@pytest.mark.chaos
def test_group_of_1000_callback_exactly_once_while_workers_are_killed(
        redis_url: str, redis_sync: redis.Redis) -> None:
    """A worker is SIGKILLed (and replaced) every second while the members run. The callback
    is enqueued by the last member's ack exactly once. It waits for ``ledger:go`` before it
    records its run, and the kills stop before that, so a second enqueue would show as a
    second record (a killed run of the callback itself re-runs, as any job, but records once)."""
    app = App(settings=Settings(redis_url=redis_url))
    wf = group([EnqueueRequest("member", args=[i]) for i in range(GROUP_SIZE)],
               callback=EnqueueRequest("collect")).enqueue(app)
    wkey = app.client.sync.keys.workflow(wf.id)
    rng = random.Random(6)
    kills = 0
    with processes(*[worker(redis_url, concurrency=8) for _ in range(3)]) as alive:
        while redis_sync.hget(wkey, "0.left") != b"0" and kills < MAX_KILLS:
            time.sleep(KILL_EVERY_S)
            victim = rng.randrange(len(alive))
            kill(alive[victim])
            kills += 1
            alive[victim] = worker(redis_url, concurrency=8)
        wait_until(lambda: redis_sync.hget(wkey, "0.left") == b"0", 60, "every member")
        redis_sync.set("ledger:go", "1")
        result = wf.result(timeout=60)
    runs = redis_sync.llen("ledger:member")
    callbacks = ledger(redis_sync, "callback")
    callback_jobs = [n for n in wf.status().jobs if n.name == "collect"]
    print(f"\ngroup: {GROUP_SIZE} members, {runs} member runs ({runs - GROUP_SIZE} re-runs "
          f"after {kills} SIGKILLs); callback enqueued once ({len(callback_jobs)} node), "
          f"recorded {len(callbacks)}x with {callbacks[0][1]} outcomes")
    assert kills >= 3
    assert len(callback_jobs) == 1 and len(callbacks) == 1
    assert callbacks[0][1:] == [str(GROUP_SIZE), str(GROUP_SIZE),
                                str(sum(range(GROUP_SIZE)))]
    assert result == GROUP_SIZE
    app.close()
