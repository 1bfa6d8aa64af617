"""Table-driven tests of the flow scripts and of the flow hooks in the core scripts: seed the
keys, run one operation, compare the whole resulting state (timestamps normalised)."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest
import redis
from lua_cases import LEASED, Case, W, inflight, job, lease, parsed, run_case

from conveyor.broker import EnqueueItem, Failure, SyncBroker

RATE = "conveyor:rate:T|1000ms"
CONC = "conveyor:concurrency:T"
BRK = "conveyor:breaker:T"


def window(limit: int = 2) -> list[Any]:
    return ["window", RATE, f"rate limit T ({limit}/1s window)", limit, 1000, 0, 0]


class AtMost:
    """Matches a stored number up to ``bound``: a bucket refills a little between two calls
    a few milliseconds apart (more on a loaded machine)."""

    def __init__(self, bound: float) -> None:
        self.bound = bound

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and 0 <= float(other) <= self.bound

    def __repr__(self) -> str:
        return f"<number <= {self.bound}>"


def bucket(limit: int = 1, burst: int = 2) -> list[Any]:
    return ["bucket", "conveyor:rate:B", "rate limit B", limit, 1000, burst, 0]


def conc(limit: int = 1) -> list[Any]:
    return ["concurrency", CONC, "concurrency limit T (1)", limit, 1000, 100, 0]


def brk(probes: int = 1) -> list[Any]:
    return ["breaker", BRK, "breaker T", probes, 1000, 100, 0]


def admit(b: SyncBroker, *checks: list[Any], token: str = "", holder: str = f"{W}|1",
          hold_max: int = 10_000, jid: str = "") -> tuple[Any, ...]:
    """Run admit.lua; the wait (ms) is reported as a bucket so rows can be written literally."""
    k = b.keys
    flat = [x for c in checks for x in c]
    reply = b.script("admit", [k.leases, k.inflight(W), k.schedule],
                     [holder, 0, token, jid, k.status_prefix, 3600, hold_max, 0.0, len(checks),
                      *flat])
    if int(reply[0]) in (0, -1):
        wait = int(reply[1])
        size = "<=1s" if wait <= 1001 else ("<=2s" if wait <= 2001 else ">2s")
        return int(reply[0]), size, reply[2].decode()
    return tuple(int(x) for x in reply)


def record(b: SyncBroker, outcome: str, probe: int = 0, holder: str = "",
           failures: int = 3, rate: int = 0, min_calls: int = 4) -> str:
    args = ["T", outcome, probe, holder, failures, rate, min_calls, 60_000, 1, 30_000]
    return b.script("breaker_record", [BRK, "conveyor:breakers"], args).decode()


def enqueue_unique(b: SyncBroker, jid: str, key: str = "k", scope: str = "running",
                   when: str = "") -> Any:
    item = EnqueueItem("default", job(jid), jid, "T", when, key, 60, scope)
    pushed = b.push([item])
    return pushed.enqueued, pushed.scheduled, pushed.duplicates


def status(jid: str, **fields: str) -> dict[str, Any]:
    return {f"conveyor:job:{jid}": {"hash": fields}}


ENQUEUED = dict(attempts="0", **{"class": "T"}, created_at="<ts>", enqueued_at="<ts>",
                queue="default", state="enqueued")

UNIQUE = [
    Case("a unique job takes its lock; a duplicate gets the holder's id and pushes nothing",
         lambda r, b: enqueue_unique(b, "j1"),
         lambda b: enqueue_unique(b, "j2"),
         (0, 0, {0: "j1"}),
         {"queues": {"set": ["default"]}, "queue:default": {"list": [parsed(job("j1"))]},
          "conveyor:unique:k": {"string": "j1"},
          **status("j1", **ENQUEUED, unique_key="conveyor:unique:k", unique_scope="running")}),
    Case("duplicates within one batch: the first wins",
         lambda r, b: None,
         lambda b: b.push([EnqueueItem("default", job(j), j, "T", "", "k", 60, "queued")
                           for j in ("x", "y")]).duplicates,
         {1: "x"},
         {"queues": {"set": ["default"]}, "queue:default": {"list": [parsed(job("x"))]},
          "conveyor:unique:k": {"string": "x"},
          **status("x", **ENQUEUED, unique_key="conveyor:unique:k", unique_scope="queued")}),
    Case("starting a job releases a lock held while queued",
         lambda r, b: (lease(r, b), enqueue_unique(b, "a", scope="queued")),
         lambda b: len(b.fetch(W, ["default"], 1) or []),
         1,
         {**LEASED, "queues": {"set": ["default"]}, "conveyor:token": {"string": "1"},
          f"conveyor:inflight:{W}": {"hash": {"1": ["default", parsed(job("a"))]}},
          **status("a", attempts="1", **{"class": "T"}, created_at="<ts>", enqueued_at="<ts>",
                   queue="default", started_at="<ts>", state="active", worker=W,
                   unique_key="conveyor:unique:k", unique_scope="queued")}),
    Case("a running-scope lock survives the start and goes with the completion",
         lambda r, b: (lease(r, b), enqueue_unique(b, "a"), b.fetch(W, ["default"], 1)),
         lambda b: (b.redis.get("conveyor:unique:k"), b.ack(W, [("1", "a", b"7")]),
                    b.redis.get("conveyor:unique:k")),
         (b"a", [], None),
         {**LEASED, "queues": {"set": ["default"]}, "conveyor:token": {"string": "1"},
          **status("a", attempts="1", **{"class": "T"}, created_at="<ts>", enqueued_at="<ts>",
                   finished_at="<ts>", queue="default", result="7", started_at="<ts>",
                   state="completed", worker=W, unique_key="conveyor:unique:k",
                   unique_scope="running")}),
    Case("a lock taken over by another job (after its TTL) is not released by the first",
         lambda r, b: (lease(r, b), enqueue_unique(b, "a"), b.fetch(W, ["default"], 1),
                       r.set("conveyor:unique:k", "other")),
         lambda b: b.ack(W, [("1", "a", b"")]),
         [],
         {**LEASED, "queues": {"set": ["default"]}, "conveyor:token": {"string": "1"},
          "conveyor:unique:k": {"string": "other"},
          **status("a", attempts="1", **{"class": "T"}, created_at="<ts>", enqueued_at="<ts>",
                   finished_at="<ts>", queue="default", started_at="<ts>", state="completed",
                   worker=W, unique_key="conveyor:unique:k", unique_scope="running")}),
    Case("a retry keeps the lock; a completed-scope lock also survives death",
         lambda r, b: (lease(r, b), enqueue_unique(b, "a", scope="completed"),
                       b.fetch(W, ["default"], 1)),
         lambda b: (b.fail(W, Failure("1", "a", "retry", job("a"), 30.0, "E", "m")),
                    b.redis.get("conveyor:unique:k")),
         (True, b"a"),
         {**LEASED, "queues": {"set": ["default"]}, "conveyor:token": {"string": "1"},
          "conveyor:unique:k": {"string": "a"},
          "retry": {"zset": [[parsed(job("a")), "<ts>"]]},
          **status("a", attempts="1", **{"class": "T"}, created_at="<ts>", enqueued_at="<ts>",
                   error_class="E", error_message="m", finished_at="<ts>", queue="default",
                   retry_at="<ts>", started_at="<ts>", state="retrying", worker=W,
                   unique_key="conveyor:unique:k", unique_scope="completed")}),
    Case("a dead job gives back a running-scope lock",
         lambda r, b: (lease(r, b), enqueue_unique(b, "a"), b.fetch(W, ["default"], 1)),
         lambda b: b.fail(W, Failure("1", "a", "dead", job("a"), 0.0, "E", "m")),
         True,
         {**LEASED, "queues": {"set": ["default"]}, "conveyor:token": {"string": "1"},
          "dead": {"zset": [[parsed(job("a")), "<ts>"]]},
          **status("a", attempts="1", **{"class": "T"}, created_at="<ts>", enqueued_at="<ts>",
                   error_class="E", error_message="m", finished_at="<ts>", queue="default",
                   started_at="<ts>", state="dead", worker=W,
                   unique_key="conveyor:unique:k", unique_scope="running")}),
    Case("cancelling a queued job releases its lock at once",
         lambda r, b: enqueue_unique(b, "a", scope="completed"),
         lambda b: (b.cancel("a"), b.redis.exists("conveyor:unique:k")),
         ("enqueued", 0),
         {"queues": {"set": ["default"]}, "queue:default": {"list": [parsed(job("a"))]},
          **status("a", **{**ENQUEUED, "state": "cancelled"}, cancelled_at="<ts>",
                   unique_key="conveyor:unique:k", unique_scope="completed")}),
]

ADMIT = [
    Case("a sliding window admits up to its limit and records each start",
         lambda r, b: admit(b, window()),
         lambda b: admit(b, window(), holder=f"{W}|2"),
         (1, 0),
         {RATE: {"zset": [[f"{W}|1@<ms>", "<ms>"], [f"{W}|2@<ms>", "<ms>"]]}}),
    Case("over the limit with a short wait the job is answered (held), nothing changes",
         lambda r, b: (admit(b, window(1)),),
         lambda b: admit(b, window(1), holder=f"{W}|2", token="2"),
         (0, "<=1s", "rate limit T (1/1s window)"),
         {RATE: {"zset": [[f"{W}|1@<ms>", "<ms>"]]}}),
    Case("over the limit with no hold allowed the job is deferred: schedule, reason, no retry",
         lambda r, b: (inflight(r, b), admit(b, window(1), holder="other|9")),
         lambda b: admit(b, window(1), token="1", hold_max=0, jid="a"),
         (-1, "<=1s", "rate limit T (1/1s window)"),
         {**LEASED, "conveyor:token": {"string": "1"},
          RATE: {"zset": [["other|9@<ms>", "<ms>"]]}, RATE + ":cursor": {"string": "<ms>"},
          "schedule": {"zset": [[parsed(job("a")), "<ts>"]]},
          **status("a", attempts="0", **{"class": "T"}, deferrals="1", deferred_at="<ts>",
                   deferred_reason="rate limit T (1/1s window)", queue="default",
                   scheduled_at="<ts>", state="scheduled")}),
    Case("an admitted job gets admitted_at in its status",
         lambda r, b: inflight(r, b),
         lambda b: admit(b, window(1), token="1", jid="a"),
         (1, 0),
         {**LEASED, "conveyor:token": {"string": "1"},
          f"conveyor:inflight:{W}": {"hash": {"1": ["default", parsed(job("a"))]}},
          RATE: {"zset": [[f"{W}|1@<ms>", "<ms>"]]},
          **status("a", admitted_at="<ts>", attempts="1", **{"class": "T"}, queue="default",
                   started_at="<ts>", state="active", worker=W)}),
    Case("a token no longer in flight is reported, nothing is moved",
         lambda r, b: (lease(r, b), admit(b, window(1), holder="other|9")),
         lambda b: admit(b, window(1), token="5", hold_max=0),
         (-2,),
         {**LEASED, RATE: {"zset": [["other|9@<ms>", "<ms>"]]}}),
    Case("a token bucket lets a burst through, then refuses until it refills",
         lambda r, b: (admit(b, bucket()), admit(b, bucket())),
         lambda b: admit(b, bucket()),
         (0, "<=1s", "rate limit B"),
         {"conveyor:rate:B": {"hash": {"tokens": AtMost(0.2), "ts": "<ms>"}}}),
    Case("a concurrency slot of a worker without a lease is free again",
         lambda r, b: (lease(r, b), r.zadd(CONC, {"lost-worker|3": 0})),
         lambda b: admit(b, conc()),
         (1, 0),
         {**LEASED, CONC: {"zset": [[f"{W}|1", 0.0]]}}),
    Case("a live holder keeps the slot: refused, with the poll interval as the wait",
         lambda r, b: (lease(r, b), r.zadd(CONC, {f"{W}|7": 0})),
         lambda b: admit(b, conc()),
         (0, "<=1s", "concurrency limit T (1)"),
         {**LEASED, CONC: {"zset": [[f"{W}|7", 0.0]]}}),
    Case("all or nothing: a refused rate limit takes no concurrency slot",
         lambda r, b: (lease(r, b), admit(b, window(1), holder="x|1")),
         lambda b: admit(b, conc(), window(1)),
         (0, "<=1s", "rate limit T (1/1s window)"),
         {**LEASED, RATE: {"zset": [["x|1@<ms>", "<ms>"]]}}),
    Case("an open breaker refuses until its open_until",
         lambda r, b: r.hset(BRK, mapping={"state": "open", "open_until": 4_000_000_000_000}),
         lambda b: admit(b, brk()),
         (0, ">2s", "breaker T is open"),
         {BRK: {"hash": {"open_until": "4000000000000", "state": "open"}}}),
    Case("an open breaker past its time half-opens and admits one probe",
         lambda r, b: (lease(r, b), r.hset(BRK, mapping={"state": "open", "open_until": 1})),
         lambda b: (admit(b, brk()), admit(b, brk(), holder=f"{W}|2")),
         ((1, 1), (0, "<=1s", "breaker T is half-open (probing)")),
         {**LEASED, BRK: {"hash": {"open_until": "1", "state": "half-open"}},
          BRK + ":events": {"list": ["<ms> half-open"]},
          BRK + ":probes": {"zset": [[f"{W}|1", 0.0]]}}),
]

BREAKER = [
    Case("failures in a row open the breaker (threshold 3)",
         lambda r, b: (record(b, "failure"), record(b, "failure")),
         lambda b: record(b, "failure"),
         "open",
         {BRK: {"hash": {"failures": "0", "open_until": "<ms>", "opened": "1",
                         "opened_at": "<ms>", "state": "open"}},
          BRK + ":events": {"list": ["<ms> open"]}, "conveyor:breakers": {"set": ["T"]}}),
    Case("a success resets the count; the window keeps both",
         lambda r, b: (record(b, "failure"), record(b, "failure")),
         lambda b: (record(b, "success"), record(b, "failure")),
         ("closed", "closed"),
         {BRK: {"hash": {"failures": "1"}}, "conveyor:breakers": {"set": ["T"]},
          BRK + ":window": {"hash": {"f<bucket>": "3", "s<bucket>": "1"}}}),
    Case("a failure rate opens it once enough calls were seen (50% of 4)",
         lambda r, b: [record(b, o, failures=0, rate=500) for o in ("success", "failure",
                                                                    "success")],
         lambda b: record(b, "failure", failures=0, rate=500),
         "open",
         {BRK: {"hash": {"failures": "0", "open_until": "<ms>", "opened": "1",
                         "opened_at": "<ms>", "state": "open"}},
          BRK + ":events": {"list": ["<ms> open"]}, "conveyor:breakers": {"set": ["T"]}}),
    Case("half-open: a failed probe opens it again and frees the probe slot",
         lambda r, b: (r.hset(BRK, mapping={"state": "half-open", "opened": 1}),
                       r.zadd(BRK + ":probes", {"w|1": 0})),
         lambda b: record(b, "failure", probe=1, holder="w|1"),
         "open",
         {BRK: {"hash": {"failures": "0", "open_until": "<ms>", "opened": "2",
                         "opened_at": "<ms>", "state": "open"}},
          BRK + ":events": {"list": ["<ms> open"]}, "conveyor:breakers": {"set": ["T"]}}),
    Case("half-open: a success closes it",
         lambda r, b: r.hset(BRK, mapping={"state": "half-open"}),
         lambda b: record(b, "success", probe=1, holder="w|1"),
         "closed",
         {BRK: {"hash": {"failures": "0", "state": "closed"}},
          BRK + ":events": {"list": ["<ms> closed"]}, "conveyor:breakers": {"set": ["T"]}}),
    Case("open: outcomes of calls admitted before it opened change nothing",
         lambda r, b: r.hset(BRK, mapping={"state": "open", "open_until": 4_000_000_000_000}),
         lambda b: (record(b, "failure"), record(b, "success")),
         ("open", "open"),
         {BRK: {"hash": {"open_until": "4000000000000", "state": "open"}},
          "conveyor:breakers": {"set": ["T"]}}),
]

CRON = [
    Case("a new entry is initialised once and starts with its next slot",
         lambda r, b: None,
         lambda b: [cron(b, "init", 1000), cron(b, "init", 2000)],
         [1, 0],
         {"conveyor:cron:last": {"hash": {"e": "1000"}}}),
    Case("a slot fires once: the same or an older slot again is refused",
         lambda r, b: cron(b, "init", 1000),
         lambda b: [cron(b, "fire", 2000, "j1"), cron(b, "fire", 2000, "j2"),
                    cron(b, "fire", 1500, "j3")],
         [1, 0, 0],
         {"conveyor:cron:last": {"hash": {"e": "2000"}}, "queues": {"set": ["default"]},
          "queue:default": {"list": [parsed(job("j1"))]},
          **status("j1", attempts="0", **{"class": "T"}, created_at="<ts>", cron="e",
                   cron_slot="2000", enqueued_at="<ts>", queue="default", state="enqueued")}),
]


def cron(b: SyncBroker, mode: str, slot: int, jid: str = "") -> int:
    k = b.keys
    return int(b.script("cron_fire", [k.cron_last, k.queues],
                        ["e", mode, slot, k.queue_prefix, k.status_prefix, 3600, "default",
                         job(jid) if jid else b"", jid, "T"]))


@pytest.mark.parametrize("case", UNIQUE + ADMIT + BREAKER + CRON, ids=lambda c: c.name)
def test_script(case: Case, broker: SyncBroker, redis_sync: redis.Redis) -> None:
    run_case(case, broker, redis_sync)


def test_deferred_jobs_are_spread_one_interval_apart(broker: SyncBroker,
                                                     redis_sync: redis.Redis) -> None:
    """A backlog refused by a rate limit comes back at the limit's pace, not all at once."""
    lease(redis_sync, broker)
    for jid in ("a", "b", "c"):
        redis_sync.lpush("queue:default", job(jid))
    fetched = broker.fetch(W, ["default"], 3) or []
    assert admit(broker, window(1), holder="x|1") == (1, 0)
    waits = []
    for f in fetched:
        k = broker.keys
        reply = broker.script("admit", [k.leases, k.inflight(W), k.schedule],
                              [f"{W}|{f.token}", 0, f.token, "", k.status_prefix, 3600, 0, 0.0,
                               1, *window(1)])
        assert int(reply[0]) == -1
        waits.append(int(reply[1]))
    assert waits[0] <= 1001
    assert [round((w2 - w1) / 1000) for w1, w2 in pairwise(waits)] == [1, 1]
    assert redis_sync.zcard("schedule") == 3 and redis_sync.hlen(broker.keys.inflight(W)) == 0
