"""Executors through a real worker and Redis: the choice of executor per queue (``conveyor worker
--executor QUEUE=KIND``), cancellation of a running job in each executor, and an asyncio job
that blocks the event loop (its timeout still fires and the lease stays renewed)."""

from __future__ import annotations

import os
import pathlib
import threading
import time

import pytest
import redis

from conveyor import Backoff, current_job
from conveyor.executors.asyncio import STALL_S
from conveyor.worker import Worker
from worker_helpers import fast_app, running_worker

from .helpers import pid_alive, until

LONG_S = 30.0  # how long the jobs below would run if nothing stopped them
LEASE_S = 5.0  # the cancel tests are not about leases: no lapse on a loaded machine
QUICK = Backoff(base_s=0.05, factor=1.0, cap_s=0.1, jitter=0.0)


def where() -> int:
    return os.getpid()


def mark(marker: str, text: str) -> None:
    """Write the marker whole or not at all: the test reads it as soon as it exists."""
    pathlib.Path(marker + ".tmp").write_text(text)
    os.replace(marker + ".tmp", marker)


def sleep_with_marker(marker: str) -> str:
    """For the process and fork executors: the marker names the child, then a long sleep."""
    mark(marker, str(os.getpid()))
    time.sleep(LONG_S)
    return "not cancelled"


def cooperative(marker: str) -> str:
    """For the thread executor: a thread cannot be killed, so the job polls its flag."""
    mark(marker, str(threading.get_ident()))
    deadline = time.monotonic() + LONG_S
    while time.monotonic() < deadline:
        if current_job().cancelled:
            mark(marker + ".stopped", "stopped")
            return "saw the cancellation"
        time.sleep(0.01)
    return "not cancelled"


async def test_a_queue_mapped_to_the_process_executor_runs_its_jobs_in_child_processes(
        redis_url: str) -> None:
    app = fast_app(redis_url)
    job = app.job(name="where", queue="cpu")(where)
    plain = app.job(name="where_default")(where)
    h_cpu, h_default = job.enqueue(), plain.enqueue()
    async with running_worker(app, queue_executors={"cpu": "process"}, concurrency=2,
                              queues=None) as worker:
        assert await h_cpu.aresult(timeout=30) != os.getpid()
        assert await h_default.aresult(timeout=30) == os.getpid()  # threads, in this process
        assert "process" in worker.info()["executors"]


@pytest.mark.parametrize("kind", ["process", "fork"])
async def test_cancel_a_running_job_kills_its_child(redis_url: str, tmp_path: pathlib.Path,
                                                    kind: str) -> None:
    app = fast_app(redis_url, lease_ttl_s=LEASE_S)
    job = app.job(name=f"long_{kind}", executor=kind, retry=0)(sleep_with_marker)
    marker = tmp_path / "child"
    h = job.enqueue(str(marker))
    async with running_worker(app, concurrency=2) as worker:
        await until(marker.exists, timeout_s=30, what="the job to start in its child")
        child = int(marker.read_text())
        assert child != os.getpid() and pid_alive(child)
        assert h.cancel() == "active"
        await until(lambda: not pid_alive(child), what="the child to be killed")
        await until(lambda: not worker.running, what="the worker to settle the job")
        stats = worker.executors[kind].stats()
        assert stats.failed == 1 and stats.in_flight == 0
        assert in_flight(worker) == 0  # settled in Redis, not handed back at shutdown
    st = h.status()
    assert st.state == "cancelled" and st.attempts == 1 and st.finished_at


async def test_cancel_a_running_thread_job(redis_url: str, tmp_path: pathlib.Path) -> None:
    app = fast_app(redis_url, lease_ttl_s=LEASE_S)
    job = app.job(name="long_thread", executor="thread", retry=0)(cooperative)
    marker = tmp_path / "thread"
    h = job.enqueue(str(marker))
    async with running_worker(app, concurrency=2) as worker:
        await until(marker.exists, timeout_s=30, what="the job to start in its thread")
        assert h.cancel() == "active"
        await until(lambda: not worker.running, what="the worker to settle the job")
        # the thread is not killed: the job saw its flag and returned on its own
        await until((tmp_path / "thread.stopped").exists, what="the job to see the flag")
        assert worker.executors["thread"].stats().in_flight == 0
        assert in_flight(worker) == 0
    assert h.status().state == "cancelled"


def in_flight(worker: Worker) -> int:
    """Entries in the worker's in-flight hash in Redis."""
    return int(worker.sync_broker.redis.hlen(worker.sync_broker.keys.inflight(worker.identity)))


class LeaseWatch(threading.Thread):
    """Samples the worker's lease from a thread of its own (the loop is blocked meanwhile):
    the smallest time it had left, by the Redis clock, and the samples taken."""

    def __init__(self, url: str, key: str, identity: str) -> None:
        super().__init__(daemon=True)
        self.r = redis.Redis.from_url(url)
        self.key, self.identity = key, identity
        self.least_left_ms = float("inf")
        self.samples = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            expiry = self.r.zscore(self.key, self.identity)
            secs, micros = self.r.time()
            left = (expiry or 0) - (secs * 1000 + micros // 1000)
            self.least_left_ms = min(self.least_left_ms, left)
            self.samples += 1


async def test_an_async_job_blocking_the_loop_times_out_and_keeps_its_lease(
        redis_url: str) -> None:
    """Issue 3: a job that blocks the loop must not stop lease renewal, and its timeout fires.
    The first run spins for 30 s with a 1 s timeout; it must fail as JobTimeout within a few
    seconds, be retried (the second run returns at once), and the heartbeat thread must renew
    the lease all the while (it beats every 0.2 s here)."""
    app = fast_app(redis_url, lease_ttl_s=2.0)
    blocked: list[float] = []
    beats: list[int] = []
    holder: dict[str, Worker] = {}

    @app.job(timeout=1.0, retry=1, backoff=QUICK)
    async def spinner() -> str:
        if current_job().attempt == 1:
            heartbeat = holder["worker"].heartbeat
            began, beats_before = time.monotonic(), heartbeat.beats
            end = began + LONG_S
            try:
                while time.monotonic() < end:
                    pass
            finally:
                blocked.append(time.monotonic() - began)
                beats.append(heartbeat.beats - beats_before)
        return current_job().payload.get("error_class", "")

    async with running_worker(app) as worker:
        holder["worker"] = worker
        watch = LeaseWatch(redis_url, worker.sync_broker.keys.leases, worker.identity)
        watch.start()
        try:
            h = spinner.enqueue()
            assert await h.aresult(timeout=20) == "JobTimeout"  # the retry saw why it failed
        finally:
            watch.stop.set()
            watch.join()
        assert not worker._fenced
    assert len(blocked) == 1 and 1.0 <= blocked[0] < 1.0 + STALL_S + 3.0, blocked
    assert beats[0] >= 3, beats  # the lease was renewed while the loop was stuck
    assert watch.samples > 0 and watch.least_left_ms > 0, watch.least_left_ms
    st = h.status()
    assert st.state == "completed" and st.attempts == 2  # retried once, never recovered
