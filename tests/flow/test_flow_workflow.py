"""Workflows: chain and group semantics, driven through the scripts by hand (fetch, ack, fail,
cancel, bury) and then by real workers in this process."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from lua_cases import W, lease

from conveyor import App, EnqueueRequest, current_job
from conveyor.broker import Failure, SyncBroker
from conveyor.flow import WorkflowFailed, chain, group, immutable
from conveyor.settings import Settings
from worker_helpers import fast_app, running_worker, wait_for


@pytest.fixture
def app(redis_url: str) -> App:
    a = App(settings=Settings(redis_url=redis_url, status_ttl_s=3600))
    for name in ("a", "b", "c", "cb"):
        a.job(name=name)(lambda *args: None)
    return a


def take(b: SyncBroker, n: int = 10) -> dict[str, tuple[str, dict[str, Any]]]:
    """Fetch every queued job as worker W: class -> (token, payload)."""
    return {json.loads(f.raw)["class"]: (f.token, json.loads(f.raw))
            for f in b.fetch(W, ["default"], n) or []}


def test_chain_passes_each_result_on_and_ends_with_the_last(app: App,
                                                            redis_sync: redis.Redis) -> None:
    b = app.client.sync
    lease(redis_sync, b)
    wf = chain(_req("a", 1), _req("b", 10), immutable(_req("c", "x"))).enqueue(app)
    (tok, payload), = take(b).values()
    assert payload["args"] == [1]
    b.ack(W, [(tok, payload["jid"], b'{"n":2}')])
    (tok, payload), = take(b).values()
    assert payload["class"] == "b" and payload["args"] == [{"n": 2}, 10]
    b.ack(W, [(tok, payload["jid"], b"3")])
    (tok, payload), = take(b).values()
    assert payload["class"] == "c" and payload["args"] == ["x"]  # immutable: no input
    assert wf.status().state == "active"
    b.ack(W, [(tok, payload["jid"], b'"done"')])
    info = wf.status()
    assert info.state == "completed" and info.result == "done"
    assert [n.state for n in info.jobs] == ["completed"] * 3
    assert redis_sync.ttl(b.keys.workflow(wf.id)) > 0


def test_a_chain_stops_at_a_dead_step(app: App, redis_sync: redis.Redis) -> None:
    b = app.client.sync
    lease(redis_sync, b)
    wf = chain(_req("a"), _req("b")).enqueue(app)
    (tok, payload), = take(b).values()
    b.fail(W, Failure(tok, payload["jid"], "retry", b"{}", 60, "E", "m"))
    assert wf.status().state == "active"  # a retry is not the end
    redis_sync.delete("retry")
    redis_sync.lpush("queue:default", json.dumps(payload))
    (tok, payload), = take(b).values()
    b.fail(W, Failure(tok, payload["jid"], "dead", b"{}", 0, "ValueError", "bad"))
    info = wf.status()
    assert info.state == "failed" and info.outcome["error_class"] == "ValueError"
    assert [n.state for n in info.jobs] == ["failed", "pending"]
    assert redis_sync.llen("queue:default") == 0
    with pytest.raises(WorkflowFailed, match="ValueError"):
        wf.result(timeout=1)


def test_group_callback_gets_results_and_failures_once(app: App,
                                                       redis_sync: redis.Redis) -> None:
    b = app.client.sync
    lease(redis_sync, b)
    wf = group(_req("a"), _req("b"), _req("c"),
               callback=_req("cb", "extra")).enqueue(app)
    jobs = take(b)
    assert sorted(jobs) == ["a", "b", "c"]
    (ta, pa), (tb, pb), (tc, pc) = jobs["a"], jobs["b"], jobs["c"]
    b.ack(W, [(ta, pa["jid"], b"1")])
    b.fail(W, Failure(tb, pb["jid"], "dead", b"{}", 0, "KeyError", "'k'"))
    assert take(b) == {}  # no callback before the last member
    b.ack(W, [(tc, pc["jid"], b"[3]")])
    (tcb, pcb), = take(b).values()
    results, extra = pcb["args"]
    assert extra == "extra"
    assert results == [
        {"jid": pa["jid"], "state": "completed", "result": 1},
        {"jid": pb["jid"], "state": "dead", "error_class": "KeyError", "error_message": "'k'"},
        {"jid": pc["jid"], "state": "completed", "result": [3]}]
    # the same member ending again (requeued from the dead set and acked) changes nothing
    redis_sync.lpush("queue:default", json.dumps(pb))
    (tb2, _), = take(b).values()
    b.ack(W, [(tb2, pb["jid"], b"2")])
    assert take(b) == {}
    b.ack(W, [(tcb, pcb["jid"], b'"summary"')])
    assert wf.result(timeout=1) == "summary"


def test_a_cancelled_member_still_lets_the_group_finish(app: App,
                                                       redis_sync: redis.Redis) -> None:
    b = app.client.sync
    lease(redis_sync, b)
    wf = group(_req("a"), _req("b"), callback=_req("cb")).enqueue(app)
    member_b = next(n for n in wf.status().jobs if n.name == "b")
    app.handle(member_b.jid).cancel()
    jobs = take(b)  # fetch drops b (cancelled) and ends its step
    assert sorted(jobs) == ["a"]
    b.ack(W, [(jobs["a"][0], jobs["a"][1]["jid"], b"")])
    (_, pcb), = take(b).values()
    assert [r["state"] for r in pcb["args"][0]] == ["completed", "cancelled"]


def test_a_poison_pill_member_buried_by_the_recoverer_ends_its_step(
        app: App, redis_sync: redis.Redis) -> None:
    b = app.client.sync
    lease(redis_sync, b)
    wf = group(_req("a"), callback=_req("cb")).enqueue(app)
    (_, pa), = take(b).values()
    entry = b"worker lost 4 times\n" + json.dumps(pa).encode()
    redis_sync.rpush(b.keys.quarantine, entry)
    assert b.bury(entry, json.dumps(pa).encode(), pa["jid"], "WorkerLost", "lost")
    (_, pcb), = take(b).values()
    assert pcb["args"][0][0]["error_class"] == "WorkerLost"
    assert wf.status().state == "active"


def test_nesting_chain_of_group_of_chains(app: App, redis_sync: redis.Redis) -> None:
    """chain(a, group(chain(b, c), b), cb): the group gets a's result; the inner chain reports
    its last step; cb gets the group's outcome list."""
    b = app.client.sync
    lease(redis_sync, b)
    wf = chain(_req("a"), group(chain(_req("b"), _req("c")), _req("b")),
               _req("cb")).enqueue(app)
    (ta, pa), = take(b).values()
    b.ack(W, [(ta, pa["jid"], b"5")])
    fetched = b.fetch(W, ["default"], 10) or []
    assert [json.loads(f.raw)["args"] for f in fetched] == [[5], [5]]
    for f in fetched:
        b.ack(W, [(f.token, json.loads(f.raw)["jid"], b"6")])
    (tc, pc), = take(b).values()
    assert pc["class"] == "c" and pc["args"] == [6]
    b.ack(W, [(tc, pc["jid"], b"7")])
    (tcb, pcb), = take(b).values()
    assert [o["result"] for o in pcb["args"][0]] == [7, 6]
    b.ack(W, [(tcb, pcb["jid"], b'"end"')])
    info = wf.status()
    assert info.state == "completed" and info.result == "end"
    assert {n.kind for n in info.nodes} == {"job", "chain", "group"}


def test_builder_rejects_what_cannot_work(app: App) -> None:
    from conveyor.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="at least one"):
        group()
    with pytest.raises(ConfigurationError, match="delay"):
        chain(_req("a", delay=5)).enqueue(app)


async def test_group_with_callback_on_a_real_worker(redis_url: str) -> None:
    app = fast_app(redis_url)

    @app.job
    def square(x: int) -> int:
        if x == 3:
            raise ValueError("three")
        return x * x

    @app.job(retry=False)
    def total(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
        return {"sum": sum(o.get("result", 0) for o in outcomes),
                "failed": [o["error_message"] for o in outcomes if o["state"] != "completed"],
                "jid": current_job().jid}

    square_once = app.job(name="square_once", retry=False)(square.__wrapped__)
    wf = group([square_once.request(x) for x in range(5)], callback=total.request()).enqueue(app)
    async with running_worker(app, concurrency=4):
        info = await wait_for(lambda: wf.status().state != "active" and wf.status(), 20,
                              "the group")
    assert info.state == "completed"
    assert info.result["sum"] == 0 + 1 + 4 + 16 and info.result["failed"] == ["three"]


def _req(name: str, *args: Any, **options: Any) -> EnqueueRequest:
    return EnqueueRequest(name, args=args, **options)
