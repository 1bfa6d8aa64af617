"""Direction 5: Ruby and Python workers on one Redis (the rules are in ``docs/sidekiq.md``).

Each side serves its own queues; a Conveyor worker never dead-sets a job that a live Sidekiq
process could run; on a queue deliberately shared (``unknown_classes=hand_back``) the jobs
Conveyor has no handler for go back to Sidekiq untouched. With the default policy on a shared
queue, the Ruby jobs fetched while no Sidekiq process is registered (a deploy) are dead-set
with the reason, and ``conveyor dead requeue`` gives them back to Sidekiq.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from interop_helpers import (
    ConveyorThread,
    Recorder,
    conveyor_cli,
    fast_app,
    ran_in_ruby,
    wait_until,
)

from conveyor import App, current_job
from conveyor.errors import ConfigurationError

pytestmark = pytest.mark.interop

BUSY_S = 5.0  # how long SleepJob keeps the one Sidekiq thread busy


def test_each_side_runs_the_queues_whose_classes_it_knows(
        app: App, ruby: Any, sidekiq: Any, conveyor: Any, recorder: Recorder,
        redis_sync: redis.Redis) -> None:
    @app.job(name="HardWorkJob", queue="py")
    def hard_work(n: int) -> None:
        recorder.add(n)

    sidekiq(["rb"])
    conveyor(app, ["py"])
    for n in range(10):
        ruby("perform_async", {"class": "HardWorkJob", "args": [n]}) if n % 2 else \
            app.enqueue("HardWorkJob", args=[n], queue="py")
        ruby("perform_async", {"class": "RubyRecordJob", "args": [n]}) if n % 2 else \
            app.enqueue("RubyRecordJob", args=[n], queue="rb")
    assert sorted(recorder.wait(10)) == list(range(10))
    assert sorted(r["args"][0] for r in ran_in_ruby(redis_sync, 10)) == list(range(10))
    assert redis_sync.zcard("retry") == redis_sync.zcard("dead") == 0


def test_a_worker_with_dead_policy_refuses_a_queue_sidekiq_serves(
        app: App, sidekiq: Any, conveyor: Any) -> None:
    ruby_proc = sidekiq(["default", "rb"])
    with pytest.raises(ConfigurationError) as err:
        conveyor(app, ["default"])
    assert "default" in str(err.value) and ruby_proc.identity in str(err.value)
    assert "unknown_classes=hand_back" in str(err.value)


def test_an_unknown_class_on_a_python_only_queue_is_dead_with_the_reason(
        app: App, ruby: Any, conveyor: Any, redis_sync: redis.Redis) -> None:
    @app.job(name="HardWorkJob", queue="py")
    def hard_work() -> None:
        pass

    conveyor(app, ["py"])
    jid = ruby("push", {"class": "Typo::HardWorkJob", "queue": "py", "args": [1, "ü"]})
    raw = wait_until(lambda: redis_sync.zrange("dead", 0, -1), what="the dead entry")[0]
    entry = json.loads(raw)
    assert entry["jid"] == jid and entry["args"] == [1, "ü"]
    assert entry["error_class"] == "UnknownJobType"
    assert entry["error_message"] == ("job type 'Typo::HardWorkJob' is not registered; "
                                      "registered types: HardWorkJob")


def test_a_sidekiq_process_arriving_later_makes_dead_policy_hand_back(
        app: App, ruby: Any, sidekiq: Any, conveyor: Any, redis_sync: redis.Redis) -> None:
    worker: ConveyorThread = conveyor(app, ["shared"])  # alone on the queue: start is allowed
    sidekiq(["shared"], concurrency=1)
    # Sidekiq is busy long enough for Conveyor to fetch, even on a loaded machine (with 1 s,
    # Sidekiq sometimes took all five first and nothing was handed back)...
    ruby("push", {"class": "SleepJob", "queue": "shared", "args": [BUSY_S]})
    wait_until(lambda: redis_sync.llen("interop:ran") == 1, what="SleepJob to start")
    jids = [ruby("push", {"class": "RubyRecordJob", "queue": "shared", "args": [n]})
            for n in range(5)]  # ...so Conveyor fetches these first
    wait_until(lambda: worker.worker.unknown.handed_back >= 1, what="a hand back")
    runs = ran_in_ruby(redis_sync, 7, timeout_s=BUSY_S + 20)  # SleepJob's start, end; five more
    assert sorted(r["jid"] for r in runs if r["class"] == "RubyRecordJob") == sorted(jids)
    assert redis_sync.zcard("dead") == redis_sync.zcard("retry") == 0


def test_hand_back_policy_shares_a_queue_during_a_migration(
        redis_url: str, ruby: Any, sidekiq: Any, conveyor: Any,
        redis_sync: redis.Redis) -> None:
    app = fast_app(redis_url, unknown_classes="hand_back")
    python_runs = Recorder()

    @app.job(name="RubyRecordJob", queue="shared")  # ported to Python; Ruby still has it
    def ported(n: int) -> None:
        python_runs.add((current_job().jid, n))

    worker: ConveyorThread = conveyor(app, ["shared"])
    ruby_only = [ruby("push", {"class": "FailJob", "queue": "shared", "args": [n]})
                 for n in range(10)]
    both = ruby("push_bulk", {"class": "RubyRecordJob", "queue": "shared",
                              "args": [[n] for n in range(10)]})
    # no Sidekiq yet: the Ruby-only jobs wait in the queue, handed back, never dead
    wait_until(lambda: worker.worker.unknown.handed_back >= 2, what="two hand backs")
    assert redis_sync.zcard("dead") == 0
    sidekiq(["shared"])
    wait_until(lambda: redis_sync.llen("queue:shared") == 0, what="the shared queue to drain")
    wait_until(lambda: redis_sync.llen("interop:ran") + len(python_runs.items) >= 20,
               what="all 20 jobs to run")
    ran = [json.loads(x) for x in redis_sync.lrange("interop:ran", 0, -1)]
    assert sorted(r["jid"] for r in ran if r["class"] == "FailJob") == sorted(ruby_only)
    done = [r["jid"] for r in ran if r["class"] == "RubyRecordJob"]
    done += [jid for jid, _ in python_runs.items]
    assert sorted(done) == sorted(both)  # each exactly once, on one side or the other
    assert redis_sync.zcard("dead") == redis_sync.zcard("retry") == 0


def test_a_sidekiq_deploy_under_dead_policy_dead_sets_ruby_jobs_and_requeue_recovers_them(
        app: App, ruby: Any, sidekiq: Any, conveyor: Any, redis_url: str,
        redis_sync: redis.Redis) -> None:
    """The window of docs/sidekiq.md "During a Sidekiq deploy": the default policy decides when
    it fetches a job, from the processes registered at that moment."""

    @app.job(name="HardWorkJob", queue="shared")
    def hard_work(n: int) -> None:
        pass

    conveyor(app, ["shared"])  # started while no Sidekiq served "shared": allowed
    old_release = sidekiq(["shared"])
    old_release.stop()  # a clean shutdown takes it out of `processes` at once
    jids = ruby("push_bulk", {"class": "RubyRecordJob", "queue": "shared",
                              "args": [[n] for n in range(3)]})
    raws = wait_until(lambda: redis_sync.zcard("dead") == 3 and redis_sync.zrange("dead", 0, -1),
                      what="the Ruby jobs to be dead-set while no Sidekiq is registered")
    entries = {e["jid"]: e for e in map(json.loads, raws)}
    assert set(entries) == set(jids)
    for n, jid in enumerate(jids):
        assert entries[jid]["args"] == [n] and entries[jid]["error_class"] == "UnknownJobType"
        assert entries[jid]["error_message"] == ("job type 'RubyRecordJob' is not registered; "
                                                 "registered types: HardWorkJob")

    sidekiq(["shared"])  # the new release is up: requeue them for it
    assert "requeued 3 job(s)" in conveyor_cli(redis_url, "dead", "requeue", *jids).stdout
    runs = ran_in_ruby(redis_sync, 3)
    assert sorted((r["jid"], r["args"]) for r in runs) == sorted(
        (jid, [n]) for n, jid in enumerate(jids))
    assert redis_sync.zcard("dead") == redis_sync.zcard("retry") == 0
