"""Direction 2: Conveyor enqueues (now, scheduled, bulk, ActiveJob envelopes), Sidekiq runs.

Only a real ``sidekiq`` process consumes here (no Conveyor worker runs), so scheduled jobs reach
their queue through Sidekiq's own poller.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from interop_helpers import CORNER_ARGS, ran_in_ruby, same_values

from conveyor import App, EnqueueRequest, activejob
from conveyor.activejob import GlobalID, Symbol

pytestmark = pytest.mark.interop


def test_immediate_scheduled_and_bulk_jobs_run_in_sidekiq(
        app: App, sidekiq: Any, redis_sync: Any) -> None:
    sidekiq(["rb"])
    start = time.time()
    now = app.enqueue("RubyRecordJob", args=CORNER_ARGS, queue="rb")
    later = app.enqueue("RubyRecordJob", args=["in"], queue="rb", delay=1.5)
    at = app.enqueue("RubyRecordJob", args=["at"], queue="rb",
                     at=datetime.fromtimestamp(start + 2.0, UTC))
    bulk = app.enqueue_many([EnqueueRequest("RubyRecordJob", args=[i], queue="rb")
                             for i in range(50)])
    runs = ran_in_ruby(redis_sync, 53)
    by_jid = {r["jid"]: r for r in runs}
    assert len(by_jid) == 53
    assert same_values(by_jid[now.id]["args"], CORNER_ARGS)
    assert by_jid[later.id]["args"] == ["in"] and by_jid[at.id]["args"] == ["at"]
    assert sorted(by_jid[h.id]["args"][0] for h in bulk) == list(range(50))
    order = [r["jid"] for r in runs]
    assert order.index(later.id) > order.index(now.id)  # it waited for its time
    assert time.time() >= start + 2.0


def test_activejob_envelopes_run_in_rails(app: App, sidekiq: Any, redis_sync: Any) -> None:
    sidekiq(["rb"])
    args = [Symbol("sym"), {Symbol("a"): 1, "b": [Symbol("c")]},
            datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC), date(2024, 1, 2),
            timedelta(minutes=5), Decimal("1.5"), GlobalID("gid://interop/Model/42"),
            "ünï 😀", 2**64, None]
    h1 = activejob.enqueue(app, "RubyAjJob", *args, queue="rb", when=date(2030, 5, 6))
    h2 = activejob.enqueue(app, "RubyAjJob", "later", queue="rb", wait=1.0)
    runs = {r["provider_job_id"]: r for r in ran_in_ruby(redis_sync, 2)}
    run = runs[h1.id]
    assert run["class"] == "RubyAjJob" and run["executions"] == 1
    assert run["args"] == [
        {"t": "Symbol", "v": "sym"},
        {"t": "Hash", "v": {"a": 1, "b": [{"t": "Symbol", "v": "c"}]}, "symbol_keys": ["a"]},
        {"t": "Time", "v": "2024-01-02T03:04:05.123456Z"},
        {"t": "Date", "v": "2024-01-02"},
        {"t": "Duration", "v": 300, "parts": {"seconds": 300}},
        "1.5",  # as Rails 6.1 itself hands a BigDecimal argument to the job
        {"t": "Model", "v": "42"},
        "ünï 😀", 2**64, None,
    ]
    assert run["kwargs"] == {"when": {"t": "Date", "v": "2030-05-06"}}
    assert runs[h2.id]["args"] == ["later"]


def test_a_time_already_past_is_queued_with_enqueued_at(app: App, ruby: Any, sidekiq: Any,
                                                         redis_sync: Any) -> None:
    """As Sidekiq's client and poller do, so that queue latency is right in the Web UI."""
    before = time.time()
    handle = app.enqueue("RubyRecordJob", args=["late"], queue="rb", at=before - 60)
    raw = redis_sync.lindex("queue:rb", 0)
    assert json.loads(raw)["enqueued_at"] >= before - 0.5
    sidekiq(["rb"])
    assert ran_in_ruby(redis_sync, 1)[0]["jid"] == handle.id
