"""Table-driven tests of the lease scripts (register, renew), hand_back, and the dead set's trim by
age, in the shape of ``test_lua.py``: seed keys, run one operation, compare the whole state."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from conveyor.broker import AsyncBroker, Failure, SyncBroker
from redis_state import snapshot
from test_lua import (
    AFTER_FETCH,
    LEASED,
    Case,
    W,
    broker,
    job,
    lease,
    parsed,
    run_case,
    seed_inflight,
)

__all__ = ["broker"]  # the fixture, shared with test_lua.py

ANCIENT_S = 1000.0  # a time of death far beyond any dead-set timeout


def hand_back(b: SyncBroker, token: str, queue: str = "default") -> bool:
    """hand_back lives on the async broker (the orchestrator's): run it once on a fresh one."""

    async def go() -> bool:
        ab = AsyncBroker(b.url, b.settings)
        try:
            return await ab.hand_back(W, token, queue)
        finally:
            await ab.close()

    return asyncio.run(go())


def seed_presumed_dead(r: redis.Redis, b: SyncBroker) -> None:
    """A worker whose lease the recoverer already removed (its jobs were requeued)."""
    lease(r, b)
    r.zrem(b.keys.leases, W)


LEASES = [
    Case("register gives a new worker a lease on the Redis clock and lists it",
         lambda r, b: None,
         lambda b: b.register(W, b'{"queues":["default"]}'),
         None,
         LEASED),
    Case("register gives a worker presumed dead its lease back",
         seed_presumed_dead,
         lambda b: b.register(W, b'{"queues":["default"]}'),
         None,
         LEASED),
    Case("renew extends a live lease",
         lease,
         lambda b: b.renew(W),
         True,
         LEASED),
    Case("renew is refused (fenced) once the lease is gone, and does not recreate it",
         seed_presumed_dead,
         lambda b: b.renew(W),
         False,
         {"conveyor:workers": {"set": [W]},
          "conveyor:worker-info": {"hash": {W: {"queues": ["default"]}}}}),
]

HAND_BACK = [
    Case("hand_back puts the job back at the front of its queue, byte for byte",
         lambda r, b: (seed_inflight(r, b), r.lpush("queue:default", job("later"))),
         lambda b: hand_back(b, "1"),
         True,
         {**AFTER_FETCH,
          "queue:default": {"list": [parsed(job("later")), parsed(job("a"))]},
          "conveyor:job:a": {"hash": {"attempts": "1", "class": "T", "queue": "default",
                                      "started_at": "<ts>", "state": "active", "worker": W}}}),
    Case("hand_back with a stale token is refused and changes nothing",
         seed_inflight,
         lambda b: hand_back(b, "7"),
         False,
         {**AFTER_FETCH,
          f"conveyor:inflight:{W}": {"hash": {"1": ["default", parsed(job("a"))]}},
          "conveyor:job:a": {"hash": {"attempts": "1", "class": "T", "queue": "default",
                                      "started_at": "<ts>", "state": "active", "worker": W}}}),
]

DEAD_AGE = [
    Case("fail to dead drops dead entries older than the dead timeout (size alone keeps them)",
         lambda r, b: (seed_inflight(r, b), r.zadd("dead", {b"ancient": ANCIENT_S})),
         lambda b: b.fail(W, Failure("1", "a", "dead", job("a"), 0.0, "E", "m")),
         True,
         {**AFTER_FETCH,
          "dead": {"zset": [[parsed(job("a")), "<ts>"]]},
          "conveyor:job:a": {"hash": {"attempts": "1", "class": "T", "error_class": "E",
                                      "error_message": "m", "finished_at": "<ts>",
                                      "queue": "default", "started_at": "<ts>",
                                      "state": "dead", "worker": W}}}),
    Case("bury drops dead entries older than the dead timeout",
         lambda r, b: (r.rpush("conveyor:quarantine", b"why\n" + job("q")),
                       r.zadd("dead", {b"ancient": ANCIENT_S})),
         lambda b: b.bury(b"why\n" + job("q"), job("q"), "q", "WorkerLost", "why"),
         True,
         {"dead": {"zset": [[parsed(job("q")), "<ts>"]]},
          "conveyor:job:q": {"hash": {"error_class": "WorkerLost", "error_message": "why",
                                      "finished_at": "<ts>", "state": "dead"}}}),
]


def seed_expired_two(r: redis.Redis, b: SyncBroker) -> None:
    """An expired worker that was running two jobs, each already lost once before."""
    lease(r, b)
    r.lpush("queue:default", job("a"), job("b"))
    b.fetch(W, ["default"], 2)
    r.set("conveyor:recoveries:a", 1)
    r.set("conveyor:recoveries:b", 1)
    r.zadd(b.keys.leases, {W: 1000})


def test_a_second_loss_schedules_each_suspect_apart_within_the_lease(
        broker: SyncBroker, redis_sync: redis.Redis) -> None:
    """Regression (issue 9, scenario 7): jobs that shared a poison pill's crashes came back to
    the front together, were fetched with it again and were buried with it. Now each waits for
    its own turn within a lease, then goes to the front of its queue (not behind the backlog)."""
    seed_expired_two(redis_sync, broker)
    redis_sync.lpush("queue:default", job("backlog"))
    assert broker.recover_expired() == (1, 2, 0)
    now_s, now_us = redis_sync.time()
    now_ms = now_s * 1000 + now_us // 1000
    waiting = redis_sync.zrange(broker.keys.suspects, 0, -1, withscores=True)
    assert sorted(parsed(entry.partition(b"\n")[2])["jid"] for entry, _ in waiting) == ["a", "b"]
    times = [score for _, score in waiting]
    lease_ms = broker.settings.lease_ttl_s * 1000
    assert all(now_ms - 1000 <= t <= now_ms + lease_ms + 1000 for t in times)
    assert abs(times[0] - times[1]) >= 0.1 * lease_ms  # apart, not together
    assert redis_sync.llen("queue:default") == 1
    for jid in ("a", "b"):
        assert redis_sync.get(f"conveyor:recoveries:{jid}") == b"2"
        assert redis_sync.hget(f"conveyor:job:{jid}", "state") == b"scheduled"
    # their turn comes: the next recoverer call puts them at the front, ahead of the backlog
    for entry, _ in waiting:
        redis_sync.zadd(broker.keys.suspects, {entry: 1000})
    assert broker.recover_expired() == (0, 0, 0)
    assert redis_sync.zcard(broker.keys.suspects) == 0
    line = [parsed(raw)["jid"] for raw in redis_sync.lrange("queue:default", 0, -1)]
    assert line[0] == "backlog" and sorted(line[1:]) == ["a", "b"]  # RPUSH end is the front
    assert redis_sync.hget("conveyor:job:a", "state") == b"enqueued"


@pytest.mark.parametrize("case", LEASES + HAND_BACK + DEAD_AGE, ids=lambda c: c.name)
def test_script(case: Case, broker: SyncBroker, redis_sync: redis.Redis) -> None:
    run_case(case, broker, redis_sync)


def test_renew_moves_the_expiry_forward(broker: SyncBroker, redis_sync: redis.Redis) -> None:
    lease(redis_sync, broker)
    redis_sync.zadd(broker.keys.leases, {W: 1000})  # as if it was about to expire
    assert broker.renew(W)
    expiry_ms: Any = redis_sync.zscore(broker.keys.leases, W)
    now_s, now_us = redis_sync.time()
    now_ms = now_s * 1000 + now_us // 1000
    lease_ms = broker.settings.lease_ttl_s * 1000
    assert now_ms < expiry_ms <= now_ms + lease_ms
    assert snapshot(redis_sync) == LEASED


def test_a_worker_registers_on_a_redis_over_its_maxmemory() -> None:
    # a full Redis is drained by workers, so one must be able to start there (register.lua runs
    # with allow-oom); a plain write of the same kind is refused
    from redis_server import RedisServer

    with RedisServer() as server:
        r = server.client()
        r.set("filler", "x" * 200_000)
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("maxmemory", int(r.info("memory")["used_memory"]) - 50_000)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            r.hset("conveyor:worker-info", W, "{}")
        b = SyncBroker(server.url)
        try:
            b.register(W, b'{"queues":["default"]}')
            assert r.zscore(b.keys.leases, W) is not None
            assert r.hget(b.keys.worker_info, W) == b'{"queues":["default"]}'
        finally:
            b.close()
            r.close()
