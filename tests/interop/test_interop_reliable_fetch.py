"""Direction 6: reliable fetch beyond Sidekiq OSS, next to a Sidekiq process on the same Redis.

A SIGKILLed Conveyor worker loses nothing: its jobs wait in its in-flight record and another
worker runs them once its lease expires. A Sidekiq process serving its own queue meanwhile runs
every job once and its API sees only Sidekiq's keys. For contrast, the last test shows Sidekiq's
own BRPOP fetch losing the jobs of a SIGKILLed process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from interop_helpers import LOG_DIR, ran_in_ruby, wait_until

from conveyor import App, EnqueueRequest

pytestmark = pytest.mark.interop

HERE = Path(__file__).parent
FAST_ENV = {"CONVEYOR_LEASE_TTL_S": "1.0", "CONVEYOR_HEARTBEAT_INTERVAL_S": "0.2",
            "CONVEYOR_RECOVERER_INTERVAL_S": "0.2", "CONVEYOR_IDLE_BLOCK_S": "0.2",
            "CONVEYOR_SCHEDULER_INTERVAL_S": "0.2", "CONVEYOR_SHUTDOWN_GRACE_S": "5"}


def conveyor_process(redis_url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, **FAST_ENV, "CONVEYOR_REDIS_URL": redis_url,
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    with (LOG_DIR / f"conveyor-{os.getpid()}.log").open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "conveyor", "worker", "--app", "pyapp:app",
                                 "-q", "py", "-c", "10"], env=env, stdout=log,
                                stderr=subprocess.STDOUT)


def phases(r: redis.Redis, phase: str) -> list[str]:
    return [e["jid"] for e in map(json.loads, r.lrange("interop:py", 0, -1))
            if e["phase"] == phase]


def test_sigkilled_conveyor_worker_loses_nothing_beside_a_sidekiq_process(
        app: App, ruby: Any, sidekiq: Any, redis_sync: redis.Redis, redis_url: str) -> None:
    ruby_proc = sidekiq(["rb"])
    jids = {h.id for h in app.enqueue_many(
        [EnqueueRequest("PySleepJob", args=[3.0], queue="py") for _ in range(10)])}
    ruby_jids = [ruby("perform_async", {"class": "RubyRecordJob", "args": [n]})
                 for n in range(5)]
    first = conveyor_process(redis_url)
    second = None
    try:
        wait_until(lambda: len(phases(redis_sync, "start")) == 10, 30, "10 jobs to start")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        inflight = [k for k in redis_sync.scan_iter("conveyor:inflight:*")]
        assert len(inflight) == 1 and redis_sync.hlen(inflight[0]) == 10  # still in Redis
        ruby_jids += [ruby("perform_async", {"class": "RubyRecordJob", "args": [n]})
                      for n in range(5, 10)]

        # Sidekiq's view of the shared Redis: only its own keys, nothing of ours
        names = sorted(q["name"] for q in ruby("queues"))
        assert names == ["py", "rb"]
        stats = ruby("stats")
        assert stats["enqueued"] == redis_sync.llen("queue:py") + redis_sync.llen("queue:rb")
        assert stats["retry_size"] == stats["dead_size"] == 0

        second = conveyor_process(redis_url)
        wait_until(lambda: set(phases(redis_sync, "end")) == jids, 60, "every job to finish")
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(20)
    runs = ran_in_ruby(redis_sync, 10)
    assert sorted(r["jid"] for r in runs) == sorted(ruby_jids)  # each once, none lost
    assert ruby_proc.proc.poll() is None and "ERROR" not in ruby_proc.tail()
    assert redis_sync.zcard("retry") == redis_sync.zcard("dead") == 0
    assert not list(redis_sync.scan_iter("conveyor:inflight:*"))


def test_sidekiq_basic_fetch_loses_in_flight_jobs_on_sigkill(
        ruby: Any, sidekiq: Any, redis_sync: redis.Redis) -> None:
    """The baseline the issue names: BRPOP takes the job out of Redis before it runs."""
    ruby_proc = sidekiq(["rb"], concurrency=2)
    jids = [ruby("perform_async", {"class": "SleepJob", "args": [30]}) for _ in range(2)]
    wait_until(lambda: redis_sync.llen("interop:ran") == 2, what="both jobs to start")
    ruby_proc.kill()
    everywhere = b"".join(redis_sync.lrange("queue:rb", 0, -1))
    for key in ("schedule", "retry", "dead"):
        everywhere += b"".join(redis_sync.zrange(key, 0, -1))
    assert all(jid.encode() not in everywhere for jid in jids)  # gone: nothing can rerun them
