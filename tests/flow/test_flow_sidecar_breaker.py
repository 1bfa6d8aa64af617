"""The breaker of an HTTP sidecar, shared in Redis by two worker processes (``sidecar_worker``)
calling one real Python sidecar (``conveyor.sidecar`` serving ``tests/executors/sidecar_app``).

The sidecar is stopped (calls are refused) while jobs keep coming, then started again on the
same port. Checked from Redis: the breaker ``sidecar:<url>`` opened once for both workers, the
jobs meanwhile were deferred (``deferred_reason``), not failed, and nothing was dead-lettered;
the calls that did fail are the threshold, the calls already in flight and one probe per
re-opening; after the restart it closed and every job completed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from flow_procs import STEADY_ENV, processes, run_python, wait_until
from sidecar_worker import CONCURRENCY, THRESHOLD

from conveyor import App, EnqueueRequest
from conveyor.admin import Inspector
from conveyor.settings import Settings
from executors.sidecars import SidecarServer, free_port, python_command

WORKERS = 2
JOBS_BEFORE = 6
JOBS_DURING = 40
WORKER_SCRIPT = str(Path(__file__).with_name("sidecar_worker.py"))


def redis_now(r: redis.Redis) -> float:
    seconds, micros = r.time()
    return seconds + micros / 1e6


@pytest.mark.slow
@pytest.mark.chaos
def test_sidecar_breaker_is_shared_by_workers_defers_and_closes(
        redis_url: str, redis_sync: redis.Redis) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    name = f"sidecar:{url}"
    app = App(settings=Settings(redis_url=redis_url))
    flow = Inspector(app.client.sync).flow
    sidecar = SidecarServer.start(python_command(port), port)
    try:
        # a 10 s lease: a recovery (a second attempt without a call) would count as a failure
        with processes(*[run_python(redis_url, WORKER_SCRIPT, url, env=STEADY_ENV)
                         for _ in range(WORKERS)]):
            wait_until(lambda: redis_sync.scard("processes") >= WORKERS, 60, "both workers")
            first = app.enqueue_many([EnqueueRequest("Sleeper", args=[0.02])
                                      for _ in range(JOBS_BEFORE)])
            wait_until(lambda: all(h.status().state == "completed" for h in first), 30,
                       "the jobs while the sidecar is up")
            sidecar.stop()  # from now on every call is refused
            handles = app.enqueue_many([EnqueueRequest("Sleeper", args=[0.02])
                                        for _ in range(JOBS_DURING)])
            wait_until(lambda: flow.breaker(name).opened_count >= 2, 30,
                       "the breaker to open, and to open again after a failed probe")
            deferred = sum(1 for h in handles
                           if h.status().deferred_reason == f"breaker {name} is open")
            assert redis_sync.zcard("dead") == 0
            recovered_at = redis_now(redis_sync)
            sidecar = SidecarServer.start(python_command(port), port)
            wait_until(lambda: all(h.status().state == "completed" for h in handles), 60,
                       "every job after the sidecar came back")
    finally:
        sidecar.stop()
    info = flow.breaker(name)
    statuses = [h.status() for h in handles]
    failed_calls = sum(s.attempts for s in statuses) - len(statuses)  # one success each
    closed_at = max(ts for ts, st in info.events if st == "closed")
    workers = {s.worker for s in statuses + [h.status() for h in first]}
    slots = WORKERS * CONCURRENCY
    print(f"\nsidecar breaker: {failed_calls} failed calls for {JOBS_DURING} jobs on "
          f"{len(workers)} workers (threshold {THRESHOLD}, {slots} slots); opened "
          f"{info.opened_count}x; {deferred} jobs deferred when sampled; closed "
          f"{closed_at - recovered_at:.2f}s after the restart began; dead "
          f"{redis_sync.zcard('dead')}")
    assert info.state == "closed" and closed_at >= recovered_at
    assert redis_sync.zcard("dead") == 0 and redis_sync.zcard("retry") == 0
    assert deferred > 0  # while open, jobs wait in the schedule with the reason
    assert len(workers) == WORKERS  # both processes ran jobs through the one breaker
    # calls while open: none; the failures are the threshold, the calls in flight when it
    # opened, and one failed probe per re-opening
    assert THRESHOLD <= failed_calls <= THRESHOLD + slots - 1 + info.opened_count - 1
    app.close()
