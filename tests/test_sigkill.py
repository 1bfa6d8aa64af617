"""At-least-once across a SIGKILL: every job runs, and duplicates are counted and bounded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from conveyor import App, EnqueueRequest
from conveyor.settings import Settings

APPS = Path(__file__).parent / "apps"
FAST_ENV = {"CONVEYOR_LEASE_TTL_S": "1.0", "CONVEYOR_HEARTBEAT_INTERVAL_S": "0.2",
            "CONVEYOR_RECOVERER_INTERVAL_S": "0.2", "CONVEYOR_IDLE_BLOCK_S": "0.2"}


LOG = Path(os.environ.get("TMPDIR", "/tmp")) / f"conveyor-test-workers-{os.getpid()}.log"


def start_worker(redis_url: str, concurrency: int = 10) -> subprocess.Popen[bytes]:
    """A worker process of the ledger app; its output goes to a log file for post-mortems."""
    env = {**os.environ, **FAST_ENV, "CONVEYOR_REDIS_URL": redis_url,
           "LEDGER_REDIS_URL": redis_url, "PYTHONPATH": str(APPS)}
    with LOG.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "conveyor", "worker", "--app", "ledger_app:app",
             "-c", str(concurrency)], env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_until(cond, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.chaos
def test_sigkill_loses_nothing_and_counts_duplicates(redis_url: str,
                                                     redis_sync: redis.Redis) -> None:
    app = App(settings=Settings(redis_url=redis_url))
    n = 300
    handles = app.enqueue_many([EnqueueRequest("work", args=[50]) for _ in range(n)])
    jids = {h.id for h in handles}
    a = start_worker(redis_url)
    b = None
    try:
        wait_until(lambda: redis_sync.llen("ledger:finished") >= 60, 30, "60 jobs done")
        a.send_signal(signal.SIGKILL)
        a.wait(10)
        killed_at = time.monotonic()
        started = {e.split()[0].decode() for e in redis_sync.lrange("ledger:started", 0, -1)}
        finished = {e.split()[0].decode() for e in redis_sync.lrange("ledger:finished", 0, -1)}
        in_flight_at_kill = len(started - finished)
        # jobs the dead worker still held in Redis: running ones, and finished ones whose
        # batched ack had not been written yet; only these can run again
        held_at_kill = sum(redis_sync.hlen(k) for k in redis_sync.scan_iter("conveyor:inflight:*"))
        held_at_kill += sum(redis_sync.llen(k) for k in redis_sync.scan_iter("conveyor:claim:*"))
        b = start_worker(redis_url)
        wait_until(lambda: len({e.split()[0] for e in redis_sync.lrange("ledger:finished", 0, -1)})
                   >= n, 60, "every job finished")
        recovered_after = time.monotonic() - killed_at
        wait_until(lambda: all(h.status().state == "completed" for h in handles), 30,
                   "every status completed")
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(15)
    runs = [e.split()[0].decode() for e in redis_sync.lrange("ledger:finished", 0, -1)]
    assert set(runs) == jids, "a job was lost"
    duplicates = len(runs) - n
    starts = redis_sync.llen("ledger:started")
    print(f"\nrunning at kill: {in_flight_at_kill}; held in Redis at kill: {held_at_kill}; "
          f"completed runs: {len(runs)} (duplicates {duplicates}); started runs: {starts} "
          f"(reruns {starts - n}); all done {recovered_after:.2f}s after the kill")
    assert in_flight_at_kill > 0 and held_at_kill >= in_flight_at_kill
    assert starts - n <= held_at_kill
    assert 0 <= duplicates <= held_at_kill
    assert redis_sync.zcard("dead") == 0


@pytest.mark.slow
@pytest.mark.chaos
def test_a_job_that_keeps_killing_its_worker_ends_dead_with_worker_lost(
        redis_url: str, redis_sync: redis.Redis) -> None:
    """Poison pill: each run kills the worker process; after max_recoveries (3) it is buried."""
    app = App(settings=Settings(redis_url=redis_url))
    h = app.enqueue("crash")
    ok = app.enqueue("work", args=[1])
    procs = []
    try:
        deadline = time.monotonic() + 60
        while redis_sync.zcard("dead") == 0:
            assert time.monotonic() < deadline, "the poison pill never reached the dead set"
            if not procs or procs[-1].poll() is not None:
                procs.append(start_worker(redis_url, concurrency=1))
            time.sleep(0.05)
        wait_until(lambda: ok.status().state == "completed", 30, "the other job")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(15)
    st = h.status()
    assert st.state == "dead" and st.error_class == "WorkerLost"
    assert "worker lost 4 times" in st.error_message
