"""Rate limits, concurrency limits and circuit breakers on real workers in this process.

Rate limits are about time, so these tests measure start times; they use periods of half a
second and a handful of jobs (a few seconds each), marked slow.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import redis

from conveyor import Backoff, EnqueueRequest
from conveyor.admin import Inspector
from conveyor.flow import Breaker, RateLimit
from worker_helpers import fast_app, running_worker, wait_for

QUICK = Backoff(base_s=0.05, factor=1.0, cap_s=0.1, jitter=0.0)


def max_in_window(times: list[float], window_s: float) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window_s:
            j += 1
        best = max(best, i - j + 1)
    return best


def admitted(handles: list[Any]) -> list[float]:
    """When the limiter let each job start (Redis clock, from its status): what a limit
    governs. The job's own clock would add the executor's latency under load."""
    return sorted(h.status().admitted_at for h in handles)


@pytest.mark.slow  # measures start times over ~2 s
async def test_sliding_window_holds_the_limit_and_defers_without_retries(
        redis_url: str, redis_sync: redis.Redis) -> None:
    app = fast_app(redis_url)
    app.job(name="limited", rate_limit="2/0.5s")(lambda: None)
    handles = app.enqueue_many([EnqueueRequest("limited") for _ in range(8)])
    async with running_worker(app, concurrency=8):
        await wait_for(lambda: all(h.status().state == "completed" for h in handles), 20)
    starts = admitted(handles)
    assert max_in_window(starts, 0.5) <= 2
    assert starts[-1] - starts[0] >= 1.5  # (8/2 - 1) periods at least
    statuses = [h.status() for h in handles]
    assert any(s.deferred_reason.startswith("rate limit limited") for s in statuses)
    assert all(s.attempts == 1 for s in statuses)  # a deferral is not an attempt
    assert redis_sync.zcard("retry") == 0 and redis_sync.zcard("dead") == 0


@pytest.mark.slow  # measures start times over ~1 s
async def test_token_bucket_lets_its_burst_through_then_the_rate(redis_url: str) -> None:
    app = fast_app(redis_url)
    app.job(name="bursty", rate_limit=RateLimit.parse("1/0.5s bucket 3"))(lambda: None)
    handles = app.enqueue_many([EnqueueRequest("bursty") for _ in range(5)])
    async with running_worker(app, concurrency=5):
        await wait_for(lambda: all(h.status().state == "completed" for h in handles), 20)
    starts = admitted(handles)
    assert starts[2] - starts[0] < 0.3  # the burst of 3
    # one token every 0.5 s from the first start: the 4th and 5th wait for theirs
    assert starts[3] - starts[0] >= 0.45 and starts[4] - starts[0] >= 0.95


@pytest.mark.slow  # measures start times over ~1 s
async def test_keyed_limits_are_separate_per_key(redis_url: str) -> None:
    app = fast_app(redis_url)

    @app.job(rate_limit=RateLimit(1, 1.0, key="tenant:{args.tenant}"))
    def per_tenant(tenant: str) -> None:
        pass

    a1, a2, b1 = handles = app.enqueue_many([per_tenant.request(t) for t in ("a", "a", "b")])
    async with running_worker(app, concurrency=3):
        await wait_for(lambda: all(h.status().state == "completed" for h in handles), 20)
    first_a, second_a = admitted([a1, a2])
    (first_b,) = admitted([b1])
    assert abs(first_a - first_b) < 0.3  # different tenants: no wait
    assert second_a - first_a >= 1.0


@pytest.mark.slow  # measures start times over ~1 s
async def test_a_limit_set_at_run_time_applies_to_an_undeclared_type(redis_url: str) -> None:
    app = fast_app(redis_url)
    app.job(name="free")(lambda: None)
    flow = Inspector(app.client.sync).flow
    info = flow.set_policy("free", rate_limit="1/0.5s")
    assert info.effective == ["rate 1/0.5s window"] and info.declared is None
    handles = app.enqueue_many([EnqueueRequest("free") for _ in range(3)])
    async with running_worker(app, concurrency=3):
        await wait_for(lambda: all(h.status().state == "completed" for h in handles), 20)
        (limit,) = flow.limits("free")
        assert limit.source == "runtime" and limit.usage is not None
    assert max_in_window(admitted(handles), 0.5) == 1
    assert flow.clear_policy("free") and flow.policies() == []


async def test_concurrency_limit_across_two_workers(redis_url: str) -> None:
    app = fast_app(redis_url)
    lock = threading.Lock()
    running, peak = [0], [0]

    @app.job(concurrency_limit=2)
    def slow() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.1)
        with lock:
            running[0] -= 1

    handles = app.enqueue_many([slow.request() for _ in range(8)])
    async with running_worker(app, concurrency=4), running_worker(app, concurrency=4):
        await wait_for(lambda: all(h.status().state == "completed" for h in handles), 30)
    assert peak[0] == 2
    usage = Inspector(app.client.sync).flow.limits(slow.name)[0].usage
    assert usage is not None and getattr(usage, "running", None) == 0


async def test_a_bad_key_template_fails_the_job_with_a_clear_reason(redis_url: str) -> None:
    app = fast_app(redis_url)

    @app.job(retry=False, concurrency_limit={"limit": 1, "key": "t:{args.missing}"})
    def keyed(x: int) -> None:
        pass

    h = keyed.enqueue(1)
    async with running_worker(app):
        st = await wait_for(lambda: h.status().finished and h.status(), 10)
    assert st.state == "failed" and st.error_class == "KeyTemplateError"
    assert "{args.missing}" in st.error_message


@pytest.mark.slow  # the breaker's open time is the thing under test (0.5 s)
async def test_breaker_opens_defers_probes_and_closes(redis_url: str,
                                                      redis_sync: redis.Redis) -> None:
    app = fast_app(redis_url)
    down = threading.Event()
    down.set()
    calls: list[tuple[float, bool]] = []

    @app.job(breaker=Breaker(failures=3, open_s=0.5, recheck_s=0.2), retry=25, backoff=QUICK)
    def remote(i: int) -> int:
        calls.append((time.time(), down.is_set()))
        if down.is_set():
            raise ConnectionError("dependency down")
        return i

    handles = app.enqueue_many([remote.request(i) for i in range(10)])
    flow = Inspector(app.client.sync).flow
    async with running_worker(app, concurrency=1):
        await wait_for(lambda: flow.breaker(remote.name).state == "open", 10, "opened")
        assert len(calls) == 3
        await wait_for(lambda: len(calls) >= 4, 10, "a half-open probe")
        assert calls[3][0] - calls[2][0] >= 0.45  # nothing went through while open
        down.clear()
        await wait_for(lambda: all(h.status().state == "completed" for h in handles), 30)
    info = flow.breaker(remote.name)
    assert info.state == "closed" and info.opened_count >= 2
    assert [s for _, s in info.events][:1] == ["closed"]
    assert redis_sync.zcard("dead") == 0
    failed_calls = sum(1 for _, failing in calls if failing)
    assert failed_calls == 3 + (info.opened_count - 1)  # the first 3, then one probe per reopen


async def test_shared_breaker_for_other_callers(redis_url: str) -> None:
    from conveyor.flow import AsyncSharedBreaker, SharedBreaker

    app = fast_app(redis_url)
    one = SharedBreaker(app.client.sync, Breaker(failures=2, open_s=30), name="sidecar")
    other = SharedBreaker(app.client.sync, Breaker(failures=2, open_s=30), name="sidecar")
    assert one.allow() and one.record(False) == "closed"
    assert other.allow() and other.record(False) == "open"  # shared: 2 in a row across both
    assert not one.allow() and 29 < one.retry_in_s <= 30
    Inspector(app.client.sync).flow.open_breaker("sidecar", 0.001)
    await asyncio.sleep(0.01)
    broker = await app.client.async_broker()
    async_one = AsyncSharedBreaker(broker, Breaker(failures=2, open_s=30), name="sidecar")
    assert await async_one.aallow()  # the probe
    assert not other.allow()  # only one probe at a time
    assert await async_one.arecord(True) == "closed"
    assert other.allow()
    await app.aclose()


async def test_an_activejob_handler_is_limited_by_its_job_class_and_decoded_arguments(
        redis_url: str, redis_sync: redis.Redis) -> None:
    """Regression: limit keys once came from the envelope's wrapper class, so every ActiveJob
    type would have shared one limit, and templates read the raw envelope."""
    from conveyor import activejob

    app = fast_app(redis_url)

    @activejob.job(app, "HelloJob")
    def hello(name: str) -> str:
        return f"hi {name}"

    Inspector(app.client.sync).flow.set_policy(
        "HelloJob", rate_limit={"limit": 5, "key": "who:{args.name}"})
    h = hello.enqueue("Bob")
    async with running_worker(app):
        st = await wait_for(lambda: h.status().finished and h.status(), 10)
    assert st.state == "completed" and st.admitted_at is not None
    assert redis_sync.zcard("conveyor:rate:who:Bob|1000ms") == 1
