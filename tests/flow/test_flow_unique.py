"""Unique jobs: duplicates return the first job's id, under concurrency too; scopes; and the
documented hole (the lock's TTL running out while the first job still retries)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from conveyor import App, EnqueueRequest
from conveyor.errors import ConfigurationError
from conveyor.flow import Unique
from conveyor.settings import Settings
from worker_helpers import fast_app, running_worker, wait_for

ROUNDS = 20
RACERS = 50


def test_a_duplicate_returns_the_existing_id(redis_url: str, redis_sync: redis.Redis) -> None:
    app = App(settings=Settings(redis_url=redis_url))
    first = app.enqueue("T", args=[1], unique_key="order:7")
    again = app.enqueue("T", args=[2], unique_key="order:7")
    other = app.enqueue("T", args=[1], unique_key="order:8")
    assert again.id == first.id and again.duplicate and not first.duplicate
    assert other.id != first.id
    assert redis_sync.llen("queue:default") == 2
    batch = app.enqueue_many([EnqueueRequest("T", unique_key="order:7"),
                              EnqueueRequest("T", unique_key="order:9")])
    assert batch[0].id == first.id and batch[0].duplicate and not batch[1].duplicate


def test_declared_uniqueness_keys_by_template_or_by_arguments(redis_url: str) -> None:
    app = App(settings=Settings(redis_url=redis_url))

    @app.job(unique=Unique(key="user:{args.user_id}"))
    def sync_user(user_id: int, full: bool = False) -> None:
        pass

    @app.job(unique=True)
    def report(day: str) -> None:
        pass

    a = sync_user.enqueue(1)
    assert sync_user.enqueue(1, full=True).id == a.id  # same user, other arguments
    assert sync_user.enqueue(user_id=2).id != a.id
    r = report.enqueue("mon")
    assert report.enqueue("mon").id == r.id and report.enqueue("tue").id != r.id
    with pytest.raises(ConfigurationError, match="scope"):
        app.enqueue("T", unique_key="k", unique_scope="forever")


def test_racing_enqueues_create_one_job_per_key(redis_url: str, redis_sync: redis.Redis) -> None:
    """T16: 50 clients enqueue the same key at once, 20 rounds: one job per key, and every
    client gets its id."""
    apps = [App(settings=Settings(redis_url=redis_url)) for _ in range(RACERS)]
    start = threading.Barrier(RACERS)

    def race(app: App, key: str) -> str:
        start.wait()
        return app.enqueue("T", unique_key=key).id

    with ThreadPoolExecutor(RACERS) as pool:
        for n in range(ROUNDS):
            ids = set(pool.map(race, apps, [f"round:{n}"] * RACERS))
            assert len(ids) == 1
    assert redis_sync.llen("queue:default") == ROUNDS
    for a in apps:
        a.close()


async def test_scopes_decide_when_a_new_job_is_accepted(redis_url: str) -> None:
    app = fast_app(redis_url)
    release = threading.Event()

    @app.job
    def blocker(tag: str) -> str:
        release.wait(10)
        return tag

    queued = app.enqueue(blocker.name, args=["q1"], unique_key="q", unique_scope="queued")
    running = app.enqueue(blocker.name, args=["r1"], unique_key="r", unique_scope="running")
    async with running_worker(app, concurrency=4):
        await wait_for(lambda: queued.status().state == "active"
                       and running.status().state == "active", 10)
        q2 = app.enqueue(blocker.name, args=["q2"], unique_key="q", unique_scope="queued")
        r2 = app.enqueue(blocker.name, args=["r2"], unique_key="r", unique_scope="running")
        assert q2.id != queued.id  # a queued-scope lock went when the job started
        assert r2.id == running.id  # a running-scope lock is held while it runs
        release.set()
        await wait_for(lambda: running.status().state == "completed", 10)
        r3 = app.enqueue(blocker.name, args=["r3"], unique_key="r", unique_scope="running")
        assert r3.id != running.id  # and released when it completed
        await wait_for(lambda: r3.status().state == "completed", 10)


@pytest.mark.slow  # the lock's TTL (1 s) running out is the thing under test
async def test_known_hole_ttl_expires_while_the_first_job_still_retries(
        redis_url: str, redis_sync: redis.Redis) -> None:
    """Documented in docs/flow-control.md: a duplicate gets in once the TTL is gone, both run,
    and the first job's end does not release the second one's lock."""
    app = fast_app(redis_url)
    runs: list[str] = []

    @app.job(retry=3)
    def flaky(tag: str) -> None:
        runs.append(tag)
        if tag == "first" and runs.count("first") == 1:
            raise ConnectionError("try again later")

    first = app.enqueue(flaky.name, args=["first"], unique_key="hole", unique_ttl=1)
    async with running_worker(app):
        await wait_for(lambda: first.status().state == "retrying", 10)
        assert app.enqueue(flaky.name, args=["dup"], unique_key="hole").id == first.id
        await asyncio.sleep(1.2)
        second = app.enqueue(flaky.name, args=["second"], unique_key="hole")
        assert second.id != first.id and not second.duplicate
        await wait_for(lambda: second.status().state == "completed", 10)
        assert redis_sync.get("conveyor:unique:hole") is None
        third = app.enqueue(flaky.name, args=["third"], unique_key="hole", unique_ttl=60)
        redis_sync.zadd("retry", {m: time.time() for m in redis_sync.zrange("retry", 0, -1)})
        await wait_for(lambda: first.status().state == "completed", 10)
        assert redis_sync.get("conveyor:unique:hole") in (third.id.encode(), None)
        await wait_for(lambda: third.status().state == "completed", 10)
    assert sorted(runs) == ["first", "first", "second", "third"]
