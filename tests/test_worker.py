"""End-to-end tests of the worker against a real Redis: outcomes, retries, schedules, bad input."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
import redis

from conveyor import Backoff, JobFailed, Retry, current_job
from conveyor.retry import decompress_backtrace
from conveyor.worker import QueueSpec
from worker_helpers import fast_app, running_worker, wait_for

QUICK = Backoff(base_s=0.05, factor=1.0, cap_s=0.1, jitter=0.0)


async def test_sync_and_async_jobs_complete_with_results(redis_url: str) -> None:
    app = fast_app(redis_url)

    @app.job
    def add(a: int, b: int) -> int:
        return a + b

    @app.job
    async def greet(name: str, *, punct: str = "!") -> str:
        await asyncio.sleep(0.01)
        return f"hi {name}{punct}"

    h1 = add.enqueue(2, 3)
    h2 = await greet.aenqueue("ann", punct="?")
    async with running_worker(app):
        assert await h1.aresult(timeout=10) == 5
        assert await h2.aresult(timeout=10) == "hi ann?"
    await app.aclose()
    st = h1.status()
    assert st.state == "completed" and st.attempts == 1 and st.name.endswith("add")
    assert st.started_at and st.finished_at and st.finished_at >= st.started_at


async def test_job_that_fails_twice_then_succeeds(redis_url: str) -> None:
    app = fast_app(redis_url)

    @app.job(retry=5, backoff=QUICK)
    def flaky() -> int:
        attempt = current_job().attempt
        if attempt < 3:
            raise ConnectionError(f"attempt {attempt}")
        return attempt

    h = flaky.enqueue()
    async with running_worker(app):
        assert await h.aresult(timeout=10) == 3
    assert h.status().attempts == 3


async def test_exhausted_retries_go_to_dead_with_sidekiq_error_fields(
        redis_url: str, redis_sync: redis.Redis) -> None:
    app = fast_app(redis_url)

    @app.job(name="Doomed", retry=1, backoff=QUICK)
    def doomed(x: int) -> None:
        raise ValueError(f"bad {x}")

    h = app.enqueue("Doomed", args=[7], extra={"backtrace": True})
    async with running_worker(app):
        with pytest.raises(JobFailed, match=r"dead.*ValueError: bad 7"):
            await h.aresult(timeout=10)
    (raw,) = redis_sync.zrange("dead", 0, -1)
    entry = json.loads(raw)
    assert entry["class"] == "Doomed" and entry["args"] == [7] and entry["jid"] == h.id
    assert entry["error_class"] == "ValueError" and entry["error_message"] == "bad 7"
    assert entry["retry_count"] == 1 and isinstance(entry["failed_at"], float)
    assert isinstance(entry["retried_at"], float)
    assert any("doomed" in line for line in decompress_backtrace(entry["error_backtrace"]))
    assert redis_sync.zcard("retry") == 0


async def test_retry_false_drops_the_job_without_a_dead_entry(
        redis_url: str, redis_sync: redis.Redis) -> None:
    app = fast_app(redis_url)

    @app.job(retry=False)
    def once() -> None:
        raise RuntimeError("no")

    h = once.enqueue()
    async with running_worker(app):
        await wait_for(lambda: h.status().state == "failed", what="failed state")
    assert redis_sync.zcard("dead") == 0 and redis_sync.zcard("retry") == 0


async def test_retry_exception_reschedules_with_its_delay(redis_url: str,
                                                         redis_sync: redis.Redis) -> None:
    app = fast_app(redis_url)
    calls: list[int] = []

    @app.job
    def later() -> str:
        calls.append(current_job().attempt)
        if len(calls) == 1:
            raise Retry(delay=0.3)
        return "done"

    h = later.enqueue()
    async with running_worker(app):
        await wait_for(lambda: redis_sync.zcard("retry") == 1 or h.status().finished)
        assert await h.aresult(timeout=10) == "done"
    assert calls == [1, 2]


async def test_scheduled_job_runs_after_its_delay(redis_url: str) -> None:
    app = fast_app(redis_url)

    @app.job
    def stamp() -> float:
        import time

        return time.time()

    import time

    before = time.time()
    h = stamp.enqueue_in(0.5)
    assert h.status().state == "scheduled"
    async with running_worker(app):
        ran_at = await h.aresult(timeout=10)
    assert ran_at >= before + 0.5


@pytest.mark.parametrize("raw,reason", [
    (b"{not json", "MalformedJob"),
    (b'["a list"]', "MalformedJob"),
    (b'{"args":[1]}', "MalformedJob"),
    (b'{"class":"os.system","args":["echo pwned"],"jid":"evil"}', "UnknownJobType"),
    (b"\xff\xfe\x00garbage", "MalformedJob"),
])
async def test_bad_entries_are_dead_lettered_and_the_worker_goes_on(
        redis_url: str, redis_sync: redis.Redis, raw: bytes, reason: str) -> None:
    app = fast_app(redis_url)

    @app.job
    def ok() -> str:
        return "fine"

    redis_sync.lpush("queue:default", raw)
    h = ok.enqueue()
    async with running_worker(app):
        assert await h.aresult(timeout=10) == "fine"
        await wait_for(lambda: redis_sync.zcard("dead") == 1, what="dead entry")
    (dead,) = redis_sync.zrange("dead", 0, -1)
    entry = json.loads(dead)
    assert entry["error_class"] == reason
    if reason == "UnknownJobType":
        assert "not registered" in entry["error_message"] and "ok" in entry["error_message"]
        assert entry["args"] == ["echo pwned"]
    else:
        assert entry["class"] == "conveyor.MalformedJob" and entry["retry"] is False
        assert entry["args"]  # the original payload is kept, nothing lost


async def test_weighted_queues_favour_high_without_starving_low(redis_url: str) -> None:
    app = fast_app(redis_url)
    order: list[str] = []

    @app.job
    def mark(q: str) -> None:
        order.append(q)

    n = 300
    for q in ("high", "default", "low"):
        reqs = [mark.request(q) for _ in range(n)]
        for req in reqs:
            req.queue = q
        app.enqueue_many(reqs)
    queues = [QueueSpec("high", 3), QueueSpec("default", 2), QueueSpec("low", 1)]
    async with running_worker(app, queues=queues, concurrency=1):
        await wait_for(lambda: len(order) >= 300, what="300 jobs")
    first = order[:300]
    share = {q: first.count(q) / 300 for q in ("high", "default", "low")}
    # expected 1/2, 1/3, 1/6; bounds are ~5 standard deviations wide
    assert 0.36 < share["high"] < 0.64, share
    assert 0.20 < share["default"] < 0.47, share
    assert 0.06 < share["low"] < 0.28, share


async def test_timeout_fails_the_job(redis_url: str) -> None:
    app = fast_app(redis_url)

    @app.job(timeout=0.2, retry=0)
    async def slow() -> None:
        await asyncio.sleep(30)

    h = slow.enqueue()
    async with running_worker(app):
        with pytest.raises(JobFailed, match="JobTimeout"):
            await h.aresult(timeout=10)


async def test_cancel_a_running_async_job(redis_url: str) -> None:
    app = fast_app(redis_url)
    started = asyncio.Event()

    @app.job
    async def long() -> None:
        started.set()
        await asyncio.sleep(30)

    h = long.enqueue()
    async with running_worker(app):
        await asyncio.wait_for(started.wait(), 10)
        assert h.cancel() == "active"
        await wait_for(lambda: h.status().finished, what="cancelled job to finish")
    st = h.status()
    assert st.state == "cancelled"


async def test_cancel_a_queued_job_means_it_never_runs(redis_url: str) -> None:
    app = fast_app(redis_url)
    ran: list[int] = []

    @app.job
    def work(i: int) -> None:
        ran.append(i)

    h1, h2 = work.enqueue(1), work.enqueue(2)
    assert h1.cancel() == "enqueued"
    async with running_worker(app):
        await h2.aresult(timeout=10)
    assert ran == [2] and h1.status().state == "cancelled"


async def test_graceful_stop_finishes_short_jobs_and_hands_back_long_ones(
        redis_url: str, redis_sync: redis.Redis) -> None:
    app = fast_app(redis_url, shutdown_grace_s=0.5)
    release = threading.Event()
    started: list[str] = []

    @app.job
    def short() -> str:
        started.append("short")
        return "ok"

    @app.job
    def long() -> None:
        started.append("long")
        release.wait(20)

    hl = long.enqueue()
    hs = short.enqueue()
    try:
        async with running_worker(app, concurrency=2) as worker:
            await wait_for(lambda: len(started) == 2, what="both jobs started")
            await wait_for(lambda: hs.status().state == "completed")
            identity = worker.identity
    finally:
        release.set()
    raws = redis_sync.lrange("queue:default", 0, -1)
    assert [json.loads(r)["jid"] for r in raws] == [hl.id]  # handed back exactly once
    assert redis_sync.exists(f"conveyor:inflight:{identity}") == 0
    assert hl.status().state == "enqueued"
    assert redis_sync.sismember("processes", identity) == 0


async def test_bulk_enqueue_and_drain(redis_url: str) -> None:
    from conveyor.testing import adrain

    app = fast_app(redis_url)
    seen: list[int] = []

    @app.job
    def count(i: int) -> None:
        seen.append(i)

    handles = app.enqueue_many([count.request(i) for i in range(1200)])
    assert len({h.id for h in handles}) == 1200
    report = await adrain(app, concurrency=20)
    assert sorted(seen) == list(range(1200)) and report.processed == 1200


async def test_heartbeat_publishes_a_sidekiq_process(redis_url: str,
                                                    redis_sync: redis.Redis) -> None:
    app = fast_app(redis_url)
    gate = threading.Event()

    @app.job
    def hold() -> None:
        gate.wait(10)

    h = hold.enqueue()
    try:
        async with running_worker(app, concurrency=3) as worker:
            await wait_for(lambda: h.status().state == "active")
            ident = worker.identity
            await wait_for(lambda: redis_sync.hget(ident, "busy") == b"1", what="busy=1")
            info = json.loads(redis_sync.hget(ident, "info"))
            assert info["identity"] == ident and info["concurrency"] == 3
            assert isinstance(info["started_at"], float) and "default" in info["queues"]
            assert redis_sync.hget(ident, "quiet") == b"false"
            for key in (f"{ident}:workers", f"{ident}:work"):
                (entry,) = redis_sync.hvals(key)
                busy = json.loads(entry)
                assert json.loads(busy["payload"])["jid"] == h.id
                assert isinstance(busy["run_at"], int)
            redis_sync.lpush(f"{ident}-signals", "TSTP")
            await wait_for(lambda: redis_sync.hget(ident, "quiet") == b"true", what="quiet")
            gate.set()
    finally:
        gate.set()
    assert int(redis_sync.get("stat:processed") or 0) >= 1


def test_arguments_that_are_not_json_raise_at_enqueue_naming_them(redis_url: str) -> None:
    from conveyor import SerializationError

    app = fast_app(redis_url)

    @app.job
    def f(*args: Any, **kwargs: Any) -> None: ...

    with pytest.raises(SerializationError, match=r"argument 1 is a set"):
        f.enqueue(1, {2})
    with pytest.raises(SerializationError, match=r"keyword argument 'x'\[0\] is nan"):
        f.enqueue(x=[float("nan")])
    with pytest.raises(SerializationError, match=r"non-string key"):
        f.enqueue({1: 2})
    assert redis.Redis.from_url(redis_url).llen("queue:default") == 0


async def test_many_schedulers_promote_each_due_job_exactly_once(
        redis_url: str, redis_sync: redis.Redis) -> None:
    """Four scheduler duties racing over 2,000 due jobs: every job lands in its queue once."""
    from conveyor.broker import AsyncBroker
    from conveyor.worker.scheduler import Scheduler

    due = {json.dumps({"class": "T", "args": [i], "jid": f"{i:024x}", "queue": "default"}): 1000.0
           for i in range(2000)}
    redis_sync.zadd("schedule", due)
    brokers = [AsyncBroker(redis_url) for _ in range(4)]
    schedulers = [Scheduler(b, interval_s=0.01, batch=50) for b in brokers]
    await asyncio.gather(*(s.tick() for s in schedulers for _ in range(20)))
    jids = [json.loads(r)["jid"] for r in redis_sync.lrange("queue:default", 0, -1)]
    assert len(jids) == 2000 and len(set(jids)) == 2000
    assert sum(s.promoted for s in schedulers) == 2000 and redis_sync.zcard("schedule") == 0
    for b in brokers:
        await b.close()


async def test_a_worker_wider_than_one_fetch_batch_runs_every_job_once(
        redis_url: str, redis_sync: redis.Redis) -> None:
    """Concurrency above FETCH_BATCH_MAX: the first fill takes several fetches, refills wait
    for a batch of free slots, and acks go out in several calls; no job is lost or run twice."""
    from conveyor import EnqueueRequest
    from conveyor.worker.orchestrator import ACK_BATCH_MAX, FETCH_BATCH_MAX

    app = fast_app(redis_url)
    ran: list[int] = []
    jobs = 3 * FETCH_BATCH_MAX + 7

    @app.job(name="tick")
    async def tick(i: int) -> None:
        ran.append(i)
        await asyncio.sleep(0.05)

    for start in range(0, jobs, 1000):
        app.enqueue_many([EnqueueRequest("tick", args=[i])
                          for i in range(start, min(jobs, start + 1000))])
    async with running_worker(app, concurrency=FETCH_BATCH_MAX + ACK_BATCH_MAX // 2):
        await wait_for(lambda: len(ran) == jobs and redis_sync.get("stat:processed")
                       and int(redis_sync.get("stat:processed")) == jobs, timeout_s=60,
                       what="every job to run and be counted")
    assert sorted(ran) == list(range(jobs))
    assert redis_sync.llen("queue:default") == 0


def test_tune_gc_freezes_start_up_and_collects_less_often() -> None:
    """run_worker's collector settings (in a child: they are process-wide)."""
    import subprocess
    import sys

    code = ("import gc; from conveyor.worker import tune_gc, GC_YOUNG_THRESHOLD as Y, "
            "GC_MIDDLE_THRESHOLD as M; tune_gc(); t = gc.get_threshold(); "
            "assert t[:2] == (Y, M) and gc.get_freeze_count() > 1000, t; "
            "gc.unfreeze(); gc.set_threshold(0); tune_gc(); assert gc.get_threshold()[0] == 0")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
