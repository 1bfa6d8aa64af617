"""``distributed="queue"``: items run as jobs on a real worker over a real Redis, and their
results flow back into the pipeline; a job error with every queue upstream full ends the run
promptly, and a worker process SIGKILLed mid-stage costs nothing but time (its jobs are
recovered by lease and rerun elsewhere)."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import App
from conveyor.context import current_job
from conveyor.errors import PipelineDefinitionError, StageFailed
from conveyor.pipeline import Pipeline
from worker_helpers import FAST, fast_app, running_worker

from .pipeline_jobs import poison, slow_square

WORKER_START_S = 15.0
PROMPT_S = 5.0  # "promptly": far below the per-test timeout, far above a healthy shutdown


def square(x: int) -> list[Any]:
    return [x * x, current_job().jid]


def invert(x: int) -> float:
    return 1 / x


def explode(x: int) -> int:
    if x == 30:
        raise ValueError(f"item {x}")
    return x


JOBS: dict[str, Any] = {}


@pytest.fixture
def app(redis_url: str) -> Iterator[App]:
    """The app with its job types registered before any worker starts (as in production)."""
    app = fast_app(redis_url)
    JOBS["square"] = app.job(square, name="pipe.square", retry=0)
    JOBS["invert"] = app.job(invert, name="pipe.invert", retry=0)
    JOBS["explode"] = app.job(explode, name="pipe.explode", retry=0)
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def worker(app: App) -> Iterator[None]:
    """A real worker for ``app``, on its own thread and event loop, like another machine's."""
    ready, stop = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def serve() -> None:
        async def main() -> None:
            async with running_worker(app, concurrency=8):
                ready.set()
                await asyncio.to_thread(stop.wait)

        try:
            asyncio.run(main())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=serve, name="test-worker")
    thread.start()
    assert ready.wait(WORKER_START_S)
    try:
        yield
    finally:
        stop.set()
        thread.join(WORKER_START_S)
        assert not errors, errors


def test_items_become_jobs_and_results_come_back(app: App, worker: None) -> None:
    pipe = Pipeline("dist")
    pipe.processor(JOBS["square"], name="square", distributed="queue", max_in_flight=4)
    pipe.processor(lambda pair: pair[0], name="value")
    result = pipe.run(range(12), collect=True)
    assert sorted(result.outputs) == [x * x for x in range(12)]
    stage = result.stats.stage("square")
    assert stage.items_in == 12 and stage.workers == 4


def test_failed_job_goes_through_the_stage_policy(app: App, worker: None) -> None:
    invert = JOBS["invert"]
    pipe = Pipeline("dist")
    pipe.processor(invert, name="invert", distributed="queue", on_error="skip")
    result = pipe.run([1, 0, 2], collect=True)
    assert sorted(result.outputs) == [0.5, 1.0]
    assert result.stats.stage("invert").skipped == 1

    pipe = Pipeline("dist")
    pipe.processor(invert, name="invert", distributed="queue")
    with pytest.raises(StageFailed, match="ZeroDivisionError"):
        pipe.run([0])


def test_distributed_needs_a_registered_job() -> None:
    with pytest.raises(PipelineDefinitionError, match=r"registered with @app\.job"):
        Pipeline().processor(lambda x: x, name="plain", distributed="queue")


def endless() -> Iterator[int]:
    yield from itertools.count()


def test_job_error_with_full_queues_ends_the_run_promptly(app: App, worker: None) -> None:
    """The distributed row of test_errors' no-hang test: the producer is blocked on a full
    queue and jobs are in flight when one fails; run() raises at once and does not wait for
    the rest."""
    pipe = Pipeline("dist")
    pipe.producer(endless, name="firehose")
    pipe.processor(lambda x: x, name="relay", queue_size=2)
    pipe.processor(
        JOBS["explode"], name="explode", distributed="queue", max_in_flight=4, queue_size=2
    )
    pipe.consumer(lambda x: None, name="sink", queue_size=2)
    started = time.perf_counter()
    with pytest.raises(StageFailed) as info:
        pipe.run()
    assert time.perf_counter() - started < PROMPT_S
    assert info.value.stage == "explode"
    assert "ValueError" in str(info.value) and "item 30" in str(info.value)
    assert pipe.current is not None
    stats = pipe.current.snapshot()
    assert stats.state == "failed"
    assert stats.stage("relay").queue_peak == 2  # the queues really were full


# --- a real worker process, SIGKILLed while it runs the stage's jobs ------------------------
HERE = Path(__file__).parent
WORKER_ENV = {f"CONVEYOR_{k.upper()}": str(v) for k, v in FAST.items()}
RECOVERED_S = 30.0  # lease (1 s here) + recoverer tick + reruns, with a wide margin


def start_worker(redis_url: str, log: Path) -> subprocess.Popen[bytes]:
    """A worker process serving pipeline_jobs:app; its output goes to ``log``."""
    env = {
        **os.environ,
        **WORKER_ENV,
        "CONVEYOR_REDIS_URL": redis_url,
        "LEDGER_REDIS_URL": redis_url,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "conveyor", "worker", "--app", "pipeline_jobs:app", "-c", "4"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_until(cond: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.02)


def runs(redis_url: str, key: str) -> list[tuple[str, int]]:
    """The ledger's ("jid", pid) entries under ``key``."""
    import redis

    with redis.Redis.from_url(redis_url) as r:
        return [(j.decode(), int(p)) for j, p in (e.split() for e in r.lrange(key, 0, -1))]


@pytest.mark.slow  # waits for a lease to expire (1 s here)
@pytest.mark.chaos
def test_sigkilled_worker_mid_stage_its_jobs_are_recovered_and_the_run_completes(
    redis_url: str, tmp_path: Path
) -> None:
    """What the docs promise (pipelines.md, Distributed stages; reliability.md): a worker that
    dies holding jobs loses none; after its lease expires another worker reruns them, and the
    stage, still waiting for their results, gets every one."""
    app = fast_app(redis_url)
    job = app.job(slow_square, name="pipe.slow_square", retry=0)
    log = tmp_path / "workers.log"
    # The survivor starts only once the victim runs jobs: started together, the survivor
    # could run all of them before the victim is up on a loaded machine.
    victim = start_worker(redis_url, log)
    survivor: subprocess.Popen[bytes] | None = None
    outcome: dict[str, Any] = {}

    def run_pipeline() -> None:
        pipe = Pipeline("dist")
        pipe.processor(job, name="square", distributed="queue", max_in_flight=8)
        try:
            outcome["result"] = pipe.run(range(24), collect=True)
        except BaseException as exc:  # reported by the main thread
            outcome["error"] = exc
        outcome["ended"] = time.monotonic()

    thread = threading.Thread(target=run_pipeline, name="test-pipeline")
    try:
        thread.start()
        wait_until(
            lambda: any(pid == victim.pid for _, pid in runs(redis_url, "pipe:started")),
            WORKER_START_S * 2,
            "the victim worker to start a job",
        )
        survivor = start_worker(redis_url, log)
        victim.send_signal(signal.SIGKILL)
        victim.wait(WORKER_START_S)
        killed_at = time.monotonic()
        thread.join(RECOVERED_S)
        assert not thread.is_alive(), f"the run did not end; worker log:\n{log.read_text()}"
    finally:
        for proc in (victim, survivor):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(WORKER_START_S)
        app.close()
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert sorted(result.outputs) == [x * x for x in range(24)]
    started = runs(redis_url, "pipe:started")
    finished = runs(redis_url, "pipe:finished")
    cut_short = {jid for jid, pid in started if pid == victim.pid} - {
        jid for jid, pid in finished if pid == victim.pid
    }
    assert cut_short, "the victim held no running job when it was killed"
    assert survivor is not None
    rerun = {jid for jid, pid in finished if pid == survivor.pid}
    assert cut_short <= rerun  # each job the kill interrupted ran again on the survivor
    stage = result.stats.stage("square")
    assert (stage.items_in, stage.items_out, stage.failed) == (24, 24, 0)
    print(f"run ended {outcome['ended'] - killed_at:.2f}s after the SIGKILL")


POISON_TIMEOUT_S = 240.0  # four worker starts and lease expiries; 36-70 s on a loaded machine


@pytest.mark.slow  # a job that kills every worker it runs on: four lease expiries
@pytest.mark.chaos
@pytest.mark.timeout(POISON_TIMEOUT_S + 60)
def test_job_that_keeps_killing_its_worker_fails_the_stage_clearly(
    redis_url: str, tmp_path: Path
) -> None:
    """The other half of the promise: a job whose worker dies more than ``max_recoveries``
    (3) times is buried as dead with ``WorkerLost``, and the stage waiting for it fails
    with that reason rather than waiting for ever. Workers are restarted as they die."""
    app = fast_app(redis_url)
    job = app.job(poison, name="pipe.poison", retry=0)
    log = tmp_path / "workers.log"
    done = threading.Event()
    workers: list[subprocess.Popen[bytes]] = []

    def supervise() -> None:  # one worker at a time, replaced when it dies
        while not done.is_set():
            if not workers or workers[-1].poll() is not None:
                workers.append(start_worker(redis_url, log))
            done.wait(0.05)

    supervisor = threading.Thread(target=supervise, name="test-supervisor")
    supervisor.start()
    pipe = Pipeline("dist")
    pipe.processor(job, name="poisoned", distributed="queue", timeout=POISON_TIMEOUT_S)
    try:
        with pytest.raises(StageFailed) as info:
            pipe.run([1])
    finally:
        done.set()
        supervisor.join(WORKER_START_S)
        for proc in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(WORKER_START_S)
        app.close()
    assert info.value.stage == "poisoned"
    assert "WorkerLost" in str(info.value), str(info.value)
    assert len(runs(redis_url, "pipe:poison")) == 4  # the first run and 3 recoveries
