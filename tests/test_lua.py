"""Table-driven tests of every Lua script: seed keys, run one operation, compare the whole state.

Timestamps are normalised to "<ts>" (seconds) and "<ms>" (lease expiry) by ``redis_state``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from conveyor.broker import EnqueueItem, Failure, SyncBroker
from conveyor.settings import Settings
from redis_state import snapshot

W = "host:1:abc"


def job(jid: str, cls: str = "T", queue: str = "default", **extra: Any) -> bytes:
    body = {"retry": True, "queue": queue, "class": cls, "args": [1], "jid": jid,
            "created_at": 1795320861.5, **extra, "enqueued_at": 1795320861.5}
    return json.dumps(body, separators=(",", ":")).encode()


def parsed(raw: bytes) -> Any:
    out = json.loads(raw)
    return {k: ("<ts>" if k.endswith("_at") else v) for k, v in out.items()}


@dataclass
class Case:
    name: str
    seed: Callable[[redis.Redis, SyncBroker], None]
    op: Callable[[SyncBroker], Any]
    result: Any
    state: dict[str, Any]


def lease(r: redis.Redis, b: SyncBroker, wid: str = W, expired: bool = False) -> None:
    b.register(wid, json.dumps({"queues": ["default"]}).encode())
    if expired:
        r.zadd(b.keys.leases, {wid: 1000})


@pytest.fixture
def broker(redis_url: str) -> Any:
    b = SyncBroker(redis_url, Settings(lease_ttl_s=10, status_ttl_s=3600, max_recoveries=2,
                                       dead_max_jobs=2))
    yield b
    b.close()


def run_case(case: Case, broker: SyncBroker, redis_sync: redis.Redis) -> None:
    case.seed(redis_sync, broker)
    assert case.op(broker) == case.result
    assert snapshot(redis_sync) == case.state


ENQUEUE = [
    Case("immediate job goes to its queue with an enqueued status",
         lambda r, b: None,
         lambda b: b.enqueue([EnqueueItem("default", job("j1"), "j1", "T")]),
         (1, 0),
         {"queues": {"set": ["default"]},
          "queue:default": {"list": [parsed(job("j1"))]},
          "conveyor:job:j1": {"hash": {"attempts": "0", "class": "T", "created_at": "<ts>",
                                       "enqueued_at": "<ts>", "queue": "default",
                                       "state": "enqueued"}}}),
    Case("delayed job goes to the schedule, scored on the Redis clock",
         lambda r, b: None,
         lambda b: b.enqueue([EnqueueItem("default", job("j2"), "j2", "T", "+60")]),
         (0, 1),
         {"schedule": {"zset": [[parsed(job("j2")), "<ts>"]]},
          "conveyor:job:j2": {"hash": {"attempts": "0", "class": "T", "created_at": "<ts>",
                                       "queue": "default", "scheduled_at": "<ts>",
                                       "state": "scheduled"}}}),
    Case("a time in the past is enqueued at once",
         lambda r, b: None,
         lambda b: b.enqueue([EnqueueItem("low", job("j3", queue="low"), "j3", "T", "@1000.0")]),
         (1, 0),
         {"queues": {"set": ["low"]},
          "queue:low": {"list": [parsed(job("j3", queue="low"))]},
          "conveyor:job:j3": {"hash": {"attempts": "0", "class": "T", "created_at": "<ts>",
                                       "enqueued_at": "<ts>", "queue": "low",
                                       "state": "enqueued"}}}),
    Case("consecutive jobs of a queue form a group: each queue gets its jobs in order, each job "
         "its status record",
         lambda r, b: None,
         lambda b: b.enqueue([EnqueueItem("default", job("g1"), "g1", "T"),
                              EnqueueItem("default", job("g2"), "g2", "T"),
                              EnqueueItem("low", job("g3", queue="low"), "g3", "T"),
                              EnqueueItem("default", job("g4"), "g4", "T")]),
         (4, 0),
         {"queues": {"set": ["default", "low"]},
          "queue:default": {"list": [parsed(job("g4")), parsed(job("g2")), parsed(job("g1"))]},
          "queue:low": {"list": [parsed(job("g3", queue="low"))]},
          **{f"conveyor:job:{jid}": {"hash": {"attempts": "0", "class": "T",
                                              "created_at": "<ts>", "enqueued_at": "<ts>",
                                              "queue": queue, "state": "enqueued"}}
             for jid, queue in (("g1", "default"), ("g2", "default"), ("g3", "low"),
                                ("g4", "default"))}}),
    Case("a unique job whose lock is held is refused, its index counted across groups",
         lambda r, b: r.set("conveyor:unique:k", "h0"),
         lambda b: b.push([EnqueueItem("default", job("g5"), "g5", "T"),
                           EnqueueItem("default", job("g6"), "g6", "T", "", "k", 60,
                                       "running")]).duplicates,
         {1: "h0"},
         {"queues": {"set": ["default"]},
          "queue:default": {"list": [parsed(job("g5"))]},
          "conveyor:job:g5": {"hash": {"attempts": "0", "class": "T", "created_at": "<ts>",
                                       "enqueued_at": "<ts>", "queue": "default",
                                       "state": "enqueued"}},
          "conveyor:unique:k": {"string": "h0"}}),
]

LEASED = {"conveyor:leases": {"zset": [[W, "<ms>"]]},
          "conveyor:workers": {"set": [W]},
          "conveyor:worker-info": {"hash": {W: {"queues": ["default"]}}}}


def seed_two(r: redis.Redis, b: SyncBroker) -> None:
    lease(r, b)
    r.lpush("queue:default", job("a"), job("b"))  # a is oldest (tail)


NESTED_JID = (b'{"class":"T","args":[{"k":1,"jid":"fake","created_at":1,"enqueued_at":2}],'
              b'"jid":"real","retry":true,"queue":"default","enqueued_at":1795320861.5}')

FETCH = [
    Case("a worker without a lease is refused",
         lambda r, b: r.lpush("queue:default", job("a")),
         lambda b: b.fetch(W, ["default"], 5),
         None,
         {"queue:default": {"list": [parsed(job("a"))]}}),
    Case("fetch takes the oldest job into the in-flight hash under a fencing token",
         seed_two,
         lambda b: [(f.token, f.queue, f.raw) for f in b.fetch(W, ["default"], 1) or []],
         [("1", "default", job("a"))],
         {**LEASED,
          "queue:default": {"list": [parsed(job("b"))]},
          "conveyor:token": {"string": "1"},
          f"conveyor:inflight:{W}": {"hash": {"1": ["default", parsed(job("a"))]}},
          "conveyor:job:a": {"hash": {"attempts": "1", "class": "T", "queue": "default",
                                      "started_at": "<ts>", "state": "active", "worker": W}}}),
    Case("a job with a status record keeps its class, and its attempts go up by one",
         lambda r, b: (seed_two(r, b), r.hset("conveyor:job:a", mapping={
             "state": "enqueued", "class": "Recorded", "attempts": "2"})),
         lambda b: [f.token for f in b.fetch(W, ["default"], 1) or []],
         ["1"],
         {**LEASED,
          "queue:default": {"list": [parsed(job("b"))]},
          "conveyor:token": {"string": "1"},
          f"conveyor:inflight:{W}": {"hash": {"1": ["default", parsed(job("a"))]}},
          "conveyor:job:a": {"hash": {"attempts": "3", "class": "Recorded", "queue": "default",
                                      "started_at": "<ts>", "state": "active", "worker": W}}}),
    # The jid is read from the job's tail where Conveyor writes it (fetch.lua): a job whose
    # tail is another shape, with a look-alike nested in its arguments, is decoded instead.
    Case("the jid of a job in another key order is its top-level one",
         lambda r, b: (lease(r, b), r.lpush("queue:default", NESTED_JID)),
         lambda b: [f.raw for f in b.fetch(W, ["default"], 1) or []],
         [NESTED_JID],
         {**LEASED,
          "conveyor:token": {"string": "1"},
          f"conveyor:inflight:{W}": {"hash": {"1": ["default", {
              "class": "T", "args": [{"k": 1, "jid": "fake", "created_at": "<ts>",
                                      "enqueued_at": "<ts>"}],
              "jid": "real", "retry": True, "queue": "default", "enqueued_at": "<ts>"}]}},
          "conveyor:job:real": {"hash": {"attempts": "1", "class": "T", "queue": "default",
                                         "started_at": "<ts>", "state": "active",
                                         "worker": W}}}),
    Case("a paused queue is skipped",
         lambda r, b: (seed_two(r, b), r.sadd("conveyor:paused", "default")),
         lambda b: b.fetch(W, ["default"], 5),
         [],
         {**LEASED, "conveyor:paused": {"set": ["default"]},
          "queue:default": {"list": [parsed(job("b")), parsed(job("a"))]}}),
    Case("a cancelled job is dropped instead of handed out",
         lambda r, b: (seed_two(r, b), r.hset("conveyor:job:a", "state", "cancelled")),
         lambda b: [f.raw for f in b.fetch(W, ["default"], 5) or []],
         [job("b")],
         {**LEASED,
          "conveyor:token": {"string": "1"},
          f"conveyor:inflight:{W}": {"hash": {"1": ["default", parsed(job("b"))]}},
          "conveyor:job:a": {"hash": {"finished_at": "<ts>", "state": "cancelled"}},
          "conveyor:job:b": {"hash": {"attempts": "1", "class": "T", "queue": "default",
                                      "started_at": "<ts>", "state": "active", "worker": W}}}),
    Case("claimed jobs come before queued ones, and queues follow the given order",
         lambda r, b: (lease(r, b), r.lpush("queue:default", job("q")),
                       r.lpush("queue:high", job("h", queue="high")),
                       r.lpush(f"conveyor:claim:{W}:default", job("c"))),
         lambda b: [json.loads(f.raw)["jid"] for f in b.fetch(W, ["high", "default"], 2) or []],
         ["c", "h"],
         {**LEASED,
          "queue:default": {"list": [parsed(job("q"))]},
          "conveyor:token": {"string": "2"},
          f"conveyor:inflight:{W}": {"hash": {"1": ["default", parsed(job("c"))],
                                              "2": ["high", parsed(job("h", queue="high"))]}},
          "conveyor:job:c": {"hash": {"attempts": "1", "class": "T", "queue": "default",
                                      "started_at": "<ts>", "state": "active", "worker": W}},
          "conveyor:job:h": {"hash": {"attempts": "1", "class": "T", "queue": "high",
                                      "started_at": "<ts>", "state": "active", "worker": W}}}),
]


def seed_inflight(r: redis.Redis, b: SyncBroker) -> None:
    lease(r, b)
    r.lpush("queue:default", job("a"))
    b.fetch(W, ["default"], 1)


AFTER_FETCH = {**LEASED, "conveyor:token": {"string": "1"}}


def seed_three_inflight(r: redis.Redis, b: SyncBroker) -> None:
    lease(r, b)
    r.rpush("queue:default", job("a"), job("b"), job("c"))
    b.fetch(W, ["default"], 3)


def seed_odd_jids(r: redis.Redis, b: SyncBroker) -> None:
    lease(r, b)
    r.rpush("queue:default", job("a\tb"), job("c\nd"))
    b.fetch(W, ["default"], 2)


def completed(jid: str, result: Any = None) -> dict[str, Any]:
    rec = {"attempts": "1", "class": "T", "finished_at": "<ts>", "queue": "default",
           "started_at": "<ts>", "state": "completed", "worker": W}
    return {"hash": rec if result is None else {**rec, "result": result}}

ACK_FAIL = [
    Case("ack removes the in-flight entry and completes the status with its result",
         seed_inflight,
         lambda b: b.ack(W, [("1", "a", b'{"ok":1}')]),
         [],
         {**AFTER_FETCH,
          "conveyor:job:a": {"hash": {"attempts": "1", "class": "T", "finished_at": "<ts>",
                                      "queue": "default", "result": {"ok": 1},
                                      "started_at": "<ts>", "state": "completed",
                                      "worker": W}}}),
    Case("an ack with a stale token is refused and changes nothing",
         seed_inflight,
         lambda b: b.ack(W, [("99", "a", b"")]),
         ["99"],
         {**AFTER_FETCH,
          f"conveyor:inflight:{W}": {"hash": {"1": ["default", parsed(job("a"))]}},
          "conveyor:job:a": {"hash": {"attempts": "1", "class": "T", "queue": "default",
                                      "started_at": "<ts>", "state": "active", "worker": W}}}),
    Case("a batch of acks, packed into one argument, completes each job and refuses the stale",
         seed_three_inflight,
         lambda b: b.ack(W, [("1", "a", b'{"ok":1}'), ("99", "x", b""), ("2", "b", b""),
                             ("3", "c", b'{"s":"a\\tb\\nc"}')]),
         ["99"],
         {**AFTER_FETCH, "conveyor:token": {"string": "3"},
          "conveyor:job:a": completed("a", {"ok": 1}),
          "conveyor:job:b": completed("b"),
          "conveyor:job:c": completed("c", {"s": "a\tb\nc"})}),
    Case("jids holding a tab or a newline are acked one argument per field",
         seed_odd_jids,
         lambda b: b.ack(W, [("1", "a\tb", b"1"), ("2", "c\nd", b"")]),
         [],
         {**AFTER_FETCH, "conveyor:token": {"string": "2"},
          "conveyor:job:a\tb": completed("a\tb", "1"),
          "conveyor:job:c\nd": completed("c\nd")}),
    Case("a retry goes to the retry set with its delay and the error on the status",
         seed_inflight,
         lambda b: b.fail(W, Failure("1", "a", "retry", job("a", error_class="E"), 30.0, "E", "m")),
         True,
         {**AFTER_FETCH,
          "retry": {"zset": [[parsed(job("a", error_class="E")), "<ts>"]]},
          "conveyor:job:a": {"hash": {"attempts": "1", "class": "T", "error_class": "E",
                                      "error_message": "m", "finished_at": "<ts>",
                                      "queue": "default", "retry_at": "<ts>",
                                      "started_at": "<ts>", "state": "retrying",
                                      "worker": W}}}),
    Case("discard drops the job and marks it failed",
         seed_inflight,
         lambda b: b.fail(W, Failure("1", "a", "discard", b"", 0.0, "E", "m")),
         True,
         {**AFTER_FETCH,
          "conveyor:job:a": {"hash": {"attempts": "1", "class": "T", "error_class": "E",
                                      "error_message": "m", "finished_at": "<ts>",
                                      "queue": "default", "started_at": "<ts>",
                                      "state": "failed", "worker": W}}}),
    Case("a failure with a stale token is refused",
         seed_inflight,
         lambda b: b.fail(W, Failure("7", "a", "dead", job("a"), 0.0, "E", "m")),
         False,
         {**AFTER_FETCH,
          f"conveyor:inflight:{W}": {"hash": {"1": ["default", parsed(job("a"))]}},
          "conveyor:job:a": {"hash": {"attempts": "1", "class": "T", "queue": "default",
                                      "started_at": "<ts>", "state": "active", "worker": W}}}),
    Case("the dead set is trimmed to its maximum size (2 here), oldest out",
         lambda r, b: (seed_inflight(r, b),
                       r.zadd("dead", {b"old1": 1795000000, b"old2": 1795000001})),
         lambda b: b.fail(W, Failure("1", "a", "dead", job("a"), 0.0, "E", "m")),
         True,
         {**AFTER_FETCH,
          "dead": {"zset": [["old2", "<ts>"], [parsed(job("a")), "<ts>"]]},
          "conveyor:job:a": {"hash": {"attempts": "1", "class": "T", "error_class": "E",
                                      "error_message": "m", "finished_at": "<ts>",
                                      "queue": "default", "started_at": "<ts>",
                                      "state": "dead", "worker": W}}}),
]

SCHED = [
    Case("a due job moves to its queue with a fresh enqueued_at; a later one stays",
         lambda r, b: r.zadd("schedule", {job("due"): 1000.0, job("later"): 4e9}),
         lambda b: b.promote("schedule", 10),
         (1, False),
         {"schedule": {"zset": [[parsed(job("later")), "<ts>"]]},
          "queues": {"set": ["default"]},
          "queue:default": {"list": [parsed(job("due"))]}}),
    Case("a due entry that is not JSON goes to quarantine with the reason",
         lambda r, b: r.zadd("schedule", {b"{oops": 1000.0}),
         lambda b: b.promote("schedule", 10),
         (0, False),
         {"conveyor:quarantine": {"list": ["malformed entry in schedule\n{oops"]}}),
    Case("a cancelled scheduled job is dropped",
         lambda r, b: (r.zadd("schedule", {job("x"): 1000.0}),
                       r.hset("conveyor:job:x", "state", "cancelled")),
         lambda b: b.promote("schedule", 10),
         (0, False),
         {"conveyor:job:x": {"hash": {"state": "cancelled"}}}),
    Case("the limit bounds one call and says more is due",
         lambda r, b: r.zadd("retry", {job("r1"): 1000.0, job("r2"): 1001.0}),
         lambda b: b.promote("retry", 1),
         (1, True),
         {"retry": {"zset": [[parsed(job("r2")), 1001.0]]},
          "queues": {"set": ["default"]},
          "queue:default": {"list": [parsed(job("r1"))]}}),
]


def seed_expired(r: redis.Redis, b: SyncBroker) -> None:
    seed_inflight(r, b)
    r.lpush(f"conveyor:claim:{W}:default", job("c"))
    r.zadd(b.keys.leases, {W: 1000})


RECOVER = [
    Case("an expired worker's in-flight and claimed jobs go back to the front of their queue "
         "(only the running one counts a loss)",
         seed_expired,
         lambda b: b.recover_expired(),
         (1, 2, 0),
         {"queues": {"set": ["default"]},
          "queue:default": {"list": [parsed(job("a")), parsed(job("c"))]},
          "conveyor:token": {"string": "1"},
          "conveyor:recoveries:a": {"string": "1"},
          "conveyor:job:a": {"hash": {"attempts": "1", "class": "T", "enqueued_at": "<ts>",
                                      "queue": "default", "started_at": "<ts>",
                                      "state": "enqueued", "worker": W}}}),
    Case("a job lost more than max_recoveries (2) times is quarantined",
         lambda r, b: (seed_expired(r, b), r.set("conveyor:recoveries:a", 2)),
         lambda b: b.recover_expired(),
         (1, 1, 1),
         {"queues": {"set": ["default"]},
          "queue:default": {"list": [parsed(job("c"))]},
          "conveyor:quarantine": {"list": [["worker lost 3 times", parsed(job("a"))]]},
          "conveyor:token": {"string": "1"},
          "conveyor:recoveries:a": {"string": "3"},
          "conveyor:job:a": {"hash": {"attempts": "1", "class": "T", "queue": "default",
                                      "started_at": "<ts>", "state": "active", "worker": W}}}),
    Case("a live lease is left alone",
         seed_inflight,
         lambda b: b.recover_expired(),
         (0, 0, 0),
         {**AFTER_FETCH,
          f"conveyor:inflight:{W}": {"hash": {"1": ["default", parsed(job("a"))]}},
          "conveyor:job:a": {"hash": {"attempts": "1", "class": "T", "queue": "default",
                                      "started_at": "<ts>", "state": "active", "worker": W}}}),
    Case("a worker that lost its lease entirely is still recovered (from the workers set)",
         lambda r, b: (seed_inflight(r, b), r.zrem(b.keys.leases, W)),
         lambda b: b.recover_expired(),
         (1, 1, 0),
         {"queues": {"set": ["default"]},
          "queue:default": {"list": [parsed(job("a"))]},
          "conveyor:token": {"string": "1"},
          "conveyor:recoveries:a": {"string": "1"},
          "conveyor:job:a": {"hash": {"attempts": "1", "class": "T", "enqueued_at": "<ts>",
                                      "queue": "default", "started_at": "<ts>",
                                      "state": "enqueued", "worker": W}}}),
    Case("release hands jobs back without counting a recovery and drops the lease",
         seed_inflight,
         lambda b: b.release(W),
         1,
         {"queues": {"set": ["default"]},
          "queue:default": {"list": [parsed(job("a"))]},
          "conveyor:token": {"string": "1"},
          "conveyor:job:a": {"hash": {"attempts": "1", "class": "T", "enqueued_at": "<ts>",
                                      "queue": "default", "started_at": "<ts>",
                                      "state": "enqueued", "worker": W}}}),
]

ADMIN = [
    Case("bury moves a quarantined entry into the dead set once",
         lambda r, b: r.rpush("conveyor:quarantine", b"why\n" + job("a")),
         lambda b: (b.bury(b"why\n" + job("a"), job("a", error_class="WorkerLost"), "a",
                           "WorkerLost", "why"),
                    b.bury(b"why\n" + job("a"), b"x", "a", "WorkerLost", "why")),
         (True, False),
         {"dead": {"zset": [[parsed(job("a", error_class="WorkerLost")), "<ts>"]]},
          "conveyor:job:a": {"hash": {"error_class": "WorkerLost", "error_message": "why",
                                      "finished_at": "<ts>", "state": "dead"}}}),
    Case("requeue moves exact members to their queues and skips missing ones",
         lambda r, b: r.zadd("dead", {job("d", queue="low"): 1795000000}),
         lambda b: b.requeue("dead", [job("d", queue="low"), job("gone")]),
         1,
         {"queues": {"set": ["low"]},
          "queue:low": {"list": [parsed(job("d", queue="low"))]},
          "conveyor:job:d": {"hash": {"class": "T", "enqueued_at": "<ts>", "queue": "low",
                                      "state": "enqueued"}}}),
    Case("cancelled names only the running jobs whose state is cancelled, and writes nothing",
         lambda r, b: (r.hset("conveyor:job:a", "state", "active"),
                       r.hset("conveyor:job:b", "state", "cancelled"),
                       r.hset("conveyor:job:c", "state", "cancelled")),
         lambda b: (b.cancelled(["a", "b", "gone", "c"]), b.cancelled([])),
         (["b", "c"], []),
         {"conveyor:job:a": {"hash": {"state": "active"}},
          "conveyor:job:b": {"hash": {"state": "cancelled"}},
          "conveyor:job:c": {"hash": {"state": "cancelled"}}}),
    Case("cancel marks a queued job cancelled and reports its previous state",
         lambda r, b: b.enqueue([EnqueueItem("default", job("k"), "k", "T")]),
         lambda b: (b.cancel("k"), b.cancel("k"), b.cancel("nope")),
         ("enqueued", "cancelled", ""),
         {"queues": {"set": ["default"]},
          "queue:default": {"list": [parsed(job("k"))]},
          "conveyor:job:k": {"hash": {"attempts": "0", "cancelled_at": "<ts>", "class": "T",
                                      "created_at": "<ts>", "enqueued_at": "<ts>",
                                      "queue": "default", "state": "cancelled"}}}),
]


@pytest.mark.parametrize("case", ENQUEUE + FETCH + ACK_FAIL + SCHED + RECOVER + ADMIN,
                         ids=lambda c: c.name)
def test_script(case: Case, broker: SyncBroker, redis_sync: redis.Redis) -> None:
    run_case(case, broker, redis_sync)


def test_promote_refreshes_only_enqueued_at(broker: SyncBroker, redis_sync: redis.Redis) -> None:
    """Every other byte of a promoted job stays as written (Sidekiq's Web UI deletes by value)."""
    raw = job("p", note="ünïcödé", big=123456789012345678901234567890)
    redis_sync.zadd("schedule", {raw: 1000.0})
    before = time.time()
    broker.promote("schedule", 10)
    (pushed,) = redis_sync.lrange("queue:default", 0, -1)
    head, _, stamp = pushed.rpartition(b',"enqueued_at":')
    assert head == raw.rpartition(b',"enqueued_at":')[0]
    assert float(stamp.rstrip(b"}")) >= before - 1


def test_promote_appends_enqueued_at_when_absent(broker: SyncBroker,
                                                 redis_sync: redis.Redis) -> None:
    raw = b'{"retry":true,"queue":"default","class":"Ruby","args":[],"jid":"r1"}'
    redis_sync.zadd("schedule", {raw: 1000.0})
    broker.promote("schedule", 10)
    (pushed,) = redis_sync.lrange("queue:default", 0, -1)
    assert pushed.startswith(raw[:-1] + b',"enqueued_at":')
    assert json.loads(pushed)["enqueued_at"] > 1e9
