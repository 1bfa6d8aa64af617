"""The process executor's own promises, beyond the contract suite: init, pull, recycle, replace."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import psutil
import pytest

from conveyor.errors import ConfigurationError, ExecutorClosed, Retry
from conveyor.executors import Task

from . import jobs
from .helpers import Ctx, pid_alive, until


async def test_init_runs_once_in_each_process(make_executor):
    ex = await make_executor("process", jobs.FUNCTIONS, 2, init=jobs.init_counter)
    outcomes = await asyncio.gather(*(ex.run(Task("InitState")) for _ in range(10)))
    assert all(o.ok for o in outcomes)
    assert {o.value[0] for o in outcomes} == {1}
    assert len({o.value[1] for o in outcomes}) <= 2
    assert jobs.STATE["init_calls"] == 0  # the hook ran in the children, not here


async def test_failing_init_hook_stops_start_with_its_error():
    from conveyor.executors import create_executor

    ex = create_executor("process", jobs.FUNCTIONS, 1, init=lambda: jobs.boom("no model"))
    with pytest.raises(ConfigurationError, match="init hook failed: ValueError: no model"):
        await ex.start()


async def test_idle_processes_pull_work_so_a_slow_task_holds_up_nothing(make_executor, tmp_path):
    ex = await make_executor("process", jobs.FUNCTIONS, 2)
    marker = tmp_path / "long"
    long = asyncio.ensure_future(ex.run(Task("Sleeper", [30, str(marker)], key="long")))
    await until(marker.exists, what="the long task to start")
    busy_pid = int(marker.read_text())
    shorts = [await ex.run(Task("Pid")) for _ in range(20)]
    assert not long.done()
    assert {o.value for o in shorts} and busy_pid not in {o.value for o in shorts}
    assert ex.cancel("long")
    assert (await long).error_class == "Cancelled"


async def test_recycles_a_process_after_max_tasks(make_executor):
    ex = await make_executor("process", jobs.FUNCTIONS, 1, max_tasks_per_child=3)
    pids = [(await ex.run(Task("Pid"))).value for _ in range(7)]
    assert pids[0] == pids[1] == pids[2] != pids[3] == pids[4] == pids[5] != pids[6]
    assert ex.stats().restarts == 2


async def test_recycles_a_process_past_max_rss(make_executor):
    # The limit sits 100 MB above what a child holds at birth: children are forked from this
    # test process, whose resident size grows with the suite that ran before.
    baseline_mb = psutil.Process().memory_info().rss / 2**20
    ex = await make_executor("process", jobs.FUNCTIONS, 1, max_rss_mb=baseline_mb + 100)
    first = (await ex.run(Task("HoldMemory", [10]))).value
    assert (await ex.run(Task("Pid"))).value == first  # still under the limit
    assert (await ex.run(Task("HoldMemory", [200]))).value == first
    assert (await ex.run(Task("Pid"))).value != first  # retired after going past it
    await until(lambda: not pid_alive(first), what="the retired process to exit")


async def test_a_process_killed_from_outside_fails_its_task_and_is_replaced(make_executor,
                                                                           tmp_path):
    ex = await make_executor("process", jobs.FUNCTIONS, 2)
    marker = tmp_path / "started"
    running = asyncio.ensure_future(ex.run(Task("Sleeper", [30, str(marker)])))
    await until(marker.exists, what="the task to start")
    victim = int(marker.read_text())
    os.kill(victim, signal.SIGKILL)
    outcome = await running
    assert outcome.error_class == "WorkerLost"
    assert f"process {victim}" in outcome.message and "signal 9 (SIGKILL)" in outcome.message
    results = await asyncio.gather(*(ex.run(Task("Pid")) for _ in range(10)))
    assert all(o.ok and o.value != victim for o in results)
    await until(lambda: ex.stats().restarts == 1)


async def test_an_idle_process_that_dies_is_replaced_before_it_gets_work(make_executor):
    ex = await make_executor("process", jobs.FUNCTIONS, 1)
    victim = (await ex.run(Task("Pid"))).value
    os.kill(victim, signal.SIGKILL)
    await until(lambda: ex.stats().restarts == 1, what="the replacement")
    outcome = await ex.run(Task("Pid"))
    assert outcome.ok and outcome.value != victim


async def test_a_dead_zygote_is_forked_again(make_executor, tmp_path):
    ex = await make_executor("process", jobs.FUNCTIONS, 1)
    victim = (await ex.run(Task("Pid"))).value
    os.kill(ex._zygote.pid, signal.SIGKILL)
    await until(lambda: not pid_alive(victim), what="the orphan to die with its zygote")
    await until(lambda: ex.stats().restarts >= 1, what="a new zygote and worker")
    outcome = await ex.run(Task("Pid"))
    assert outcome.ok and outcome.value != victim


async def test_cancelling_a_task_still_waiting_for_a_process(make_executor, tmp_path):
    ex = await make_executor("process", jobs.FUNCTIONS, 1)
    marker = tmp_path / "started"
    first = asyncio.ensure_future(ex.run(Task("Sleeper", [0.5, str(marker)])))
    await until(marker.exists)
    waiting = asyncio.ensure_future(ex.run(Task("Exit", [9], key="w")))
    await until(lambda: "w" in ex._waiting)
    assert ex.cancel("w")
    assert (await waiting).error_class == "Cancelled"
    assert (await first).ok
    assert ex.stats().restarts == 0  # the cancelled task never reached a process


async def test_results_errors_and_context_cross_the_boundary_as_json(make_executor):
    ex = await make_executor("process", jobs.FUNCTIONS, 1)
    retry = await ex.run(Task("RetryLater", [7]))
    assert isinstance(retry.error, Retry) and retry.error.delay == 7
    bad = await ex.run(Task("NotJson"))
    assert bad.error_class == "SerializationError" and "set" in bad.message
    who = await ex.run(Task("WhoAmI", context=Ctx("abc", name="WhoAmI", attempt=3)))
    assert who.value == ["abc", "WhoAmI", 3]
    coro = await ex.run(Task("Sleeper", [0.01]))
    assert coro.ok
    args = await ex.run(Task("Echo", [{"a"}]))
    assert args.error_class == "SerializationError"
    assert ex.stats().restarts == 0


async def test_async_functions_run_to_completion_in_the_child(make_executor):
    ex = await make_executor("process", jobs.ASYNC_FUNCTIONS, 1)
    outcome = await ex.run(Task("Interval", [0.05]))
    assert outcome.ok and outcome.value[1] - outcome.value[0] >= 0.05


async def test_stop_waits_for_running_tasks_then_leaves_no_process(tmp_path):
    from conveyor.executors import create_executor

    ex = create_executor("process", jobs.FUNCTIONS, 2)
    await ex.start()
    zygote = ex._zygote.pid
    pids = {(await ex.run(Task("Pid"))).value}
    running = asyncio.ensure_future(ex.run(Task("Interval", [0.3])))
    await until(lambda: ex.in_flight == 1)
    await ex.stop(grace_s=10)
    assert (await running).ok
    assert not pid_alive(zygote) and not any(pid_alive(p) for p in pids)
    closed = await ex.run(Task("Pid"))
    assert isinstance(closed.error, ExecutorClosed)


def test_module_registers_its_kind():
    from conveyor.executors import EXECUTOR_KINDS, create_executor

    create_executor("asyncio", {}, 1)  # loads the optional executors
    assert EXECUTOR_KINDS["process"].__name__ == "ProcessExecutor"
    assert Path(__file__).parent.joinpath("jobs.py").exists()


async def test_a_caller_that_gives_up_has_the_process_killed_and_replaced(make_executor,
                                                                         tmp_path):
    ex = await make_executor("process", jobs.FUNCTIONS, 1)
    marker = tmp_path / "started"
    running = asyncio.ensure_future(ex.run(Task("Sleeper", [30, str(marker)])))
    await until(marker.exists)
    victim = int(marker.read_text())
    running.cancel()  # what the worker's shutdown does to a job past its grace period
    with pytest.raises(asyncio.CancelledError):
        await running
    await until(lambda: not pid_alive(victim), what="the abandoned process to be killed")
    outcome = await ex.run(Task("Pid"))
    assert outcome.ok and outcome.value != victim
