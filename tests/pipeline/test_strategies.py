"""Real concurrency per strategy: N threads really run N items at once, asyncio overlaps
awaits, processes spread over N worker PIDs, forks fork, contexts share one limit."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conveyor.pipeline import Pipeline

WORK_S = 0.05  # the stage's simulated work per item (this is the workload, not a wait)


def test_threads_5_run_20_items_of_50ms_in_about_200ms() -> None:
    """Minigun's thread_pool(5) took 1006 ms here on one thread."""
    pipe = Pipeline()
    seen: set[str] = set()

    @pipe.processor(threads=5)
    def work(x: int) -> int:
        seen.add(threading.current_thread().name)
        time.sleep(WORK_S)
        return x

    started = time.perf_counter()
    result = pipe.run(range(20), collect=True)
    elapsed = time.perf_counter() - started
    assert sorted(result.outputs) == list(range(20))
    assert len(seen) == 5
    assert 0.19 <= elapsed < 0.5, elapsed


def test_asyncio_overlaps_awaits() -> None:
    pipe = Pipeline()
    active = peak = 0

    @pipe.processor(asyncio=10)
    async def fetch(x: int) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(WORK_S)
        active -= 1
        return x

    started = time.perf_counter()
    result = pipe.run(range(20), collect=True)
    assert sorted(result.outputs) == list(range(20))
    assert peak == 10
    assert time.perf_counter() - started < 0.4


def cpu_work(rounds: int = 200_000) -> int:
    """A fixed amount of CPU (about 15-35 ms here); not wall-clock spinning, which would
    finish early under time-sharing and fake a speed-up."""
    total = 0
    for i in range(rounds):
        total += i * i
    return total


@pytest.mark.slow
def test_processes_4_use_4_pids_and_scale_where_cores_allow() -> None:
    """Four worker PIDs always; the ~4x speed-up is asserted only where 4 cores exist."""

    def build(**strategy: Any) -> Pipeline:
        pipe = Pipeline()

        @pipe.processor(**strategy)
        def burn(x: int) -> list[int]:
            cpu_work()
            return [x, os.getpid()]

        return pipe

    items = range(40)
    started = time.perf_counter()
    one = build(processes=1).run(items, collect=True)
    t_one = time.perf_counter() - started
    started = time.perf_counter()
    four = build(processes=4).run(items, collect=True)
    t_four = time.perf_counter() - started
    assert sorted(x for x, _ in four.outputs) == list(items)
    pids = {pid for _, pid in four.outputs}
    assert len(pids) == 4 and os.getpid() not in pids
    assert len({pid for _, pid in one.outputs}) == 1
    cores = len(os.sched_getaffinity(0))
    if cores >= 4:  # the ~4x claim needs the cores; allow for scheduling noise
        assert t_one / t_four > 2.5, (t_one, t_four)
    # With fewer cores the ratio depends on what else the machine runs (2 shared vCPUs gave
    # 1.0-2.8x here); it is measured in bench/pipeline/RESULTS.md rather than asserted.


RENDEZVOUS_S = 10.0  # how long a process's first item waits to see the other process


def test_processes_2_run_items_at_the_same_time(tmp_path: Path) -> None:
    """Two worker processes work at once, shown without a clock: the first item each process
    gets leaves a marker and waits until the other process's marker is there too. Run one
    after the other, the first process would wait out ``RENDEZVOUS_S`` alone and report it.
    (The speed-up this gives on CPU work is measured in bench/pipeline, not asserted here.)"""
    pipe = Pipeline()
    waited: set[int] = set()  # per process: a forked child has its own copy

    @pipe.processor(processes=2)
    def meet(x: int) -> list[int]:
        pid = os.getpid()
        met = 1
        if pid not in waited:
            waited.add(pid)
            (tmp_path / str(pid)).touch()
            deadline = time.monotonic() + RENDEZVOUS_S
            while len(list(tmp_path.iterdir())) < 2:
                if time.monotonic() > deadline:
                    met = 0
                    break
                time.sleep(0.005)
        return [x, pid, met]

    result = pipe.run(range(40), collect=True)
    assert sorted(x for x, _, _ in result.outputs) == list(range(40))
    pids = {pid for _, pid, _ in result.outputs}
    assert len(pids) == 2 and os.getpid() not in pids
    assert all(met for _, _, met in result.outputs), "a process waited alone for the other"


IDLE_CPU_SHARE = 0.25  # the spinning wait took ~0.5 s of CPU per 1 s of wall time here


@pytest.mark.parametrize(
    "strategy", [{"threads": 2}, {"processes": 2}], ids=["threads", "processes"]
)
def test_waiting_parent_stays_idle(strategy: dict[str, Any]) -> None:
    """Regression (run.py's wait spun): once one stage was done (here the source, at once),
    every wait for the others returned at once, so the event loop spun on a full core's share
    while workers slept or computed; on 2 cores it ate the processes=2 speed-up."""
    pipe = Pipeline()

    @pipe.processor(name="nap", **strategy)
    def nap(x: int) -> int:
        time.sleep(0.02)  # the workload: waiting, which should cost this process no CPU
        return x

    before, started = os.times(), time.perf_counter()
    pipe.run(range(40))
    after, wall = os.times(), time.perf_counter() - started
    cpu = (after.user - before.user) + (after.system - before.system)
    assert cpu < IDLE_CPU_SHARE * wall, (cpu, wall)


def test_forks_run_items_in_child_processes() -> None:
    pipe = Pipeline()

    @pipe.processor(forks=2)
    def where(x: int) -> list[int]:
        return [x * 2, os.getpid()]

    result = pipe.run(range(10), collect=True)
    assert sorted(x for x, _ in result.outputs) == [x * 2 for x in range(10)]
    assert os.getpid() not in {pid for _, pid in result.outputs}


def test_thread_context_is_one_limit_shared_by_its_stages() -> None:
    pipe = Pipeline()
    pipe.context("io", threads=3)
    lock = threading.Lock()
    active = peak = 0

    def track(x: int) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.01)
        with lock:
            active -= 1
        return x

    pipe.processor(track, name="a", context="io")
    pipe.processor(track, name="b", context="io")
    result = pipe.run(range(30), collect=True)
    assert sorted(result.outputs) == list(range(30))
    assert peak == 3  # 3 threads each in a and b, but only 3 permits between them


def test_process_context_shares_one_pool() -> None:
    pipe = Pipeline()
    pipe.context("cpu", processes=2)
    pipe.processor(lambda x: [x, os.getpid()], name="a", context="cpu")
    pipe.processor(lambda pair: [pair[0], pair[1], os.getpid()], name="b", context="cpu")
    result = pipe.run(range(20), collect=True)
    assert sorted(x for x, *_ in result.outputs) == list(range(20))
    pids = {p for _, a, b in result.outputs for p in (a, b)}
    assert len(pids) <= 2


def test_interpreters_fall_back_to_processes_and_say_so(caplog: pytest.LogCaptureFixture) -> None:
    """The documented fallback (pipelines.md): processes=N, a warning, a note, on any Python."""
    pipe = Pipeline()
    pipe.processor(lambda x: os.getpid(), name="sub", interpreters=2)
    assert pipe.build(source=[]).stages["sub"].strategy.kind == "processes"
    with caplog.at_level(logging.WARNING, logger="conveyor.pipeline"):
        result = pipe.run(range(20), collect=True)
    assert os.getpid() not in result.outputs  # out of process, really
    stage = result.stats.stage("sub")
    assert stage.strategy == "processes=2 (asked interpreters=2)"
    assert stage.workers == 2
    python = f"Python {sys.version_info.major}.{sys.version_info.minor}"
    expected = (
        "interpreters=2: sub-interpreter stages are not implemented in this engine yet (they "
        f"would use concurrent.interpreters, Python 3.14+; this is {python}), so the stage is "
        "running on processes=2"
    )
    assert stage.notes == [expected]
    warnings_logged = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings_logged] == [f"stage 'sub': {expected}"]


def test_interpreters_context_falls_back_too() -> None:
    pipe = Pipeline()
    pipe.context("sub", interpreters=2)
    pipe.processor(lambda x: x + 1, name="a", context="sub")
    result = pipe.run(range(5), collect=True)
    assert sorted(result.outputs) == [1, 2, 3, 4, 5]
    assert result.stats.stage("a").strategy == "processes=2 @sub (asked interpreters=2)"


def test_per_worker_state_from_init() -> None:
    pipe = Pipeline()
    made: list[int] = []

    def init() -> dict[str, int]:
        made.append(1)
        return {"calls": 0}

    @pipe.processor(threads=3, init=init)
    def count(x: int, state: dict[str, int]) -> int:
        state["calls"] += 1
        return x

    pipe.run(range(50))
    assert len(made) == 3  # one state per worker thread


def test_process_workers_each_init_once() -> None:
    pipe = Pipeline()

    def init() -> dict[str, Any]:
        return {"pid": os.getpid(), "calls": 0}

    @pipe.processor(processes=2, init=init, chunk_size=1)
    def count(x: int, state: dict[str, Any]) -> list[Any]:
        state["calls"] += 1
        return [state["pid"], os.getpid(), state["calls"]]

    result = pipe.run(range(40), collect=True)
    assert all(init_pid == pid for init_pid, pid, _ in result.outputs)
    per_pid: dict[int, list[int]] = {}
    for _, pid, calls in result.outputs:
        per_pid.setdefault(pid, []).append(calls)
    for calls in per_pid.values():  # one counter per worker, never reset: init ran once there
        assert sorted(calls) == list(range(1, len(calls) + 1))
