"""The whole path: a worker with a supervised sidecar, the sidecar killed mid-job, and every job
retried through Redis until it completes (needs the session's Redis server)."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from conveyor.app import App, JobSpec
from conveyor.retry import Backoff
from conveyor.settings import Settings
from conveyor.worker.orchestrator import Worker

from . import jobs, sidecars
from .helpers import until

JOBS = 4
RETRY_PAUSE = Backoff(base_s=0.2, factor=1.0, cap_s=0.2, jitter=0.0)
FAST = {"scheduler_interval_s": 0.1, "idle_block_s": 0.2, "shutdown_grace_s": 2.0}


@pytest.mark.chaos
@pytest.mark.slow
async def test_a_worker_retries_the_jobs_of_a_killed_sidecar(redis_url, tmp_path):
    app = App(redis_url=redis_url, settings=Settings.from_env(**FAST))
    app.register(JobSpec(name="Sleeper", fn=jobs.async_sleeper, executor="http", retry=10,
                         backoff=RETRY_PAUSE))
    options = {"http": {"command": sidecars.python_command(), "env": sidecars.SIDECAR_ENV,
                        "failure_threshold": 2, "reset_after_s": 0.5}}
    worker = Worker(app, concurrency=JOBS, executor_options=options)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        markers = [tmp_path / f"job-{i}" for i in range(JOBS)]
        handles = [await app.aenqueue("Sleeper", args=[2.0, str(m)]) for m in markers]
        await until(lambda: all(m.exists() for m in markers), timeout_s=30,
                    what="every job to start in the sidecar")
        http = worker.executors["http"]
        os.kill(http.supervisor.pid, signal.SIGKILL)
        results = await asyncio.gather(*(h.aresult(timeout=60) for h in handles))
        assert results == [2.0] * JOBS  # nothing lost: every job completed
        statuses = [await asyncio.to_thread(h.status) for h in handles]
        assert all(s.attempts >= 2 for s in statuses), statuses  # ...after at least one retry
        assert http.stats().restarts == 1 and http.breaker.opened >= 1
    finally:
        stop.set()
        await running
        await app.client.aclose()
        app.close()
