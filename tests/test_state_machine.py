"""A hypothesis state machine: the job lifecycle scripts against a simple in-memory model.

Operations: enqueue, fetch (per worker), ack, fail (retry), promote due retries, lease expiry +
recovery, and acks from workers whose jobs were already recovered (must be refused). After every
step each job is in exactly one place, and that place is where the model says.
"""

from __future__ import annotations

import json
from collections import Counter

import redis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from conveyor.broker import EnqueueItem, Failure, SyncBroker
from conveyor.settings import Settings

WORKERS = ("w1", "w2")
MAX_RECOVERIES = 2
SPREAD_FROM = 2  # from its second loss a recovered job is scheduled back (recover.lua)


def raw(jid: str) -> bytes:
    return json.dumps({"retry": True, "queue": "q", "class": "T", "args": [], "jid": jid,
                       "enqueued_at": 1795320861.5}, separators=(",", ":")).encode()


class JobLifecycle(RuleBasedStateMachine):
    url = ""  # set by the test to the session's Redis

    def __init__(self) -> None:
        super().__init__()
        url = self.url
        self.r = redis.Redis.from_url(url)
        self.r.flushall()
        self.b = SyncBroker(url, Settings(max_recoveries=MAX_RECOVERIES, lease_ttl_s=60))
        for w in WORKERS:
            self.b.register(w, b'{"queues":["q"]}')
        self.n = 0
        # jid -> queue | inflight:<w> | retry | suspect | done | dead
        self.place: dict[str, str] = {}
        self.tokens: dict[str, tuple[str, str]] = {}  # token -> (worker, jid), live or stale
        self.current: dict[str, str] = {}  # jid -> the token of its latest fetch
        self.recoveries: Counter[str] = Counter()

    def teardown(self) -> None:
        self.b.close()
        self.r.close()

    @rule(count=st.integers(1, 4))
    def enqueue(self, count: int) -> None:
        items = []
        for _ in range(count):
            self.n += 1
            jid = f"j{self.n}"
            items.append(EnqueueItem("q", raw(jid), jid, "T"))
            self.place[jid] = "queue"
        assert self.b.enqueue(items) == (count, 0)

    @rule(w=st.sampled_from(WORKERS), n=st.integers(1, 3))
    def fetch(self, w: str, n: int) -> None:
        got = self.b.fetch(w, ["q"], n)
        assert got is not None
        queued = [j for j, p in self.place.items() if p == "queue"]
        assert len(got) == min(n, len(queued))
        for f in got:
            jid = json.loads(f.raw)["jid"]
            assert self.place[jid] == "queue"
            self.place[jid] = f"inflight:{w}"
            self.tokens[f.token] = (w, jid)
            self.current[jid] = f.token

    def _live(self) -> list[tuple[str, str, str]]:
        return [(t, w, j) for t, (w, j) in self.tokens.items()
                if self.place.get(j) == f"inflight:{w}" and self.current.get(j) == t]

    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        live = self._live()
        if not live:
            return
        token, w, jid = data.draw(st.sampled_from(live))
        assert self.b.ack(w, [(token, jid, b"")]) == []
        self.place[jid] = "done"
        del self.tokens[token]

    @rule(data=st.data())
    def fail(self, data: st.DataObject) -> None:
        live = self._live()
        if not live:
            return
        token, w, jid = data.draw(st.sampled_from(live))
        assert self.b.fail(w, Failure(token, jid, "retry", raw(jid), 0.0, "E", "m"))
        self.place[jid] = "retry"
        del self.tokens[token]

    @rule()
    def promote(self) -> None:
        moved, _ = self.b.promote(self.b.keys.retry, 1000)
        due = [j for j, p in self.place.items() if p == "retry"]
        assert moved == len(due)
        for j in due:
            self.place[j] = "queue"

    @rule()
    def spread_jobs_come_due(self) -> None:
        """Time passes: the suspects spread over the lease are due; the recoverer moves them to
        the front of their queue."""
        key = self.b.keys.suspects
        for member in self.r.zrange(key, 0, -1):
            self.r.zadd(key, {member: 1000})
        self.b.recover_expired()
        for j, p in self.place.items():
            if p == "suspect":
                self.place[j] = "queue"

    @rule(w=st.sampled_from(WORKERS))
    def lease_expires(self, w: str) -> None:
        self.r.zadd(self.b.keys.leases, {w: 1})
        workers, _, quarantined = self.b.recover_expired()
        assert workers == 1
        lost = [j for j, p in self.place.items() if p == f"inflight:{w}"]
        buried = 0
        for j in lost:
            self.recoveries[j] += 1
            if self.recoveries[j] > MAX_RECOVERIES:
                self.place[j] = "dead"
                buried += 1
            elif self.recoveries[j] >= SPREAD_FROM:
                self.place[j] = "suspect"
            else:
                self.place[j] = "queue"
        assert quarantined == buried
        for entry in self.r.lrange(self.b.keys.quarantine, 0, -1):
            jid = json.loads(entry.partition(b"\n")[2])["jid"]
            assert self.b.bury(entry, raw(jid), jid, "WorkerLost", "lost")
        self.b.register(w, b'{"queues":["q"]}')

    @rule(data=st.data())
    def stale_ack_is_refused(self, data: st.DataObject) -> None:
        live = set(self._live())
        stale = [(t, w, j) for t, (w, j) in self.tokens.items() if (t, w, j) not in live]
        if not stale:
            return
        token, w, jid = data.draw(st.sampled_from(stale))
        assert self.b.ack(w, [(token, jid, b"")]) == [token]
        assert not self.b.fail(w, Failure(token, jid, "dead", raw(jid), 0.0, "E", "m"))

    @invariant()
    def every_job_is_where_the_model_says(self) -> None:
        actual: dict[str, str] = {}
        for raw_job in self.r.lrange("queue:q", 0, -1):
            actual[json.loads(raw_job)["jid"]] = "queue"
        for w in WORKERS:
            for entry in self.r.hvals(self.b.keys.inflight(w)):
                actual[json.loads(entry.partition(b"\n")[2])["jid"]] = f"inflight:{w}"
        for member in self.r.zrange("retry", 0, -1):
            actual[json.loads(member)["jid"]] = "retry"
        for member in self.r.zrange(self.b.keys.suspects, 0, -1):
            actual[json.loads(member.partition(b"\n")[2])["jid"]] = "suspect"
        for member in self.r.zrange("dead", 0, -1):
            actual[json.loads(member)["jid"]] = "dead"
        expected = {j: p for j, p in self.place.items() if p != "done"}
        assert actual == expected
        assert self.r.llen(self.b.keys.quarantine) == 0

def test_job_lifecycle_matches_the_model(redis_url: str) -> None:
    JobLifecycle.url = redis_url
    run_state_machine_as_test(
        JobLifecycle, settings=settings(max_examples=100, stateful_step_count=40, deadline=None))
