"""The asyncio executor's watchdog: a job that blocks the event loop still times out, and a loop
blocked too long is reported with its stack (``conveyor.executors.asyncio``).

The jobs here block the loop for real (a busy Python loop, ``time.sleep``), about one second
each: that is the behaviour under test, not a wait for a condition.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest

from conveyor.errors import JobTimeout
from conveyor.executors import Task, create_executor
from conveyor.executors.asyncio import WATCHDOG

JOB_TIMEOUT_S = 1.0
BLOCK_S = 30.0  # how long the blocking jobs would run if nothing stopped them
PROMPT_S = 5.0  # "within a few seconds": timeout + stall detection + a loaded machine
LOG = "conveyor.executors.asyncio"


def spin(seconds: float) -> int:
    """Pure Python work: never yields to the loop, never releases the GIL for long."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


async def busy(seconds: float) -> int:
    return spin(seconds)


async def stubborn(seconds: float) -> str:
    """Catches every Exception, as careless job code does; the interrupt is not one."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:  # noqa: SIM105 - written the way careless job code is
            spin(0.01)
        except Exception:
            pass
    return "never interrupted"


async def sleepy(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


async def ticker(count: int, every_s: float) -> int:
    for _ in range(count):
        await asyncio.sleep(every_s)
    return count


async def waits(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "waited"


async def echo(value: Any) -> Any:
    return value


FUNCTIONS = {"Busy": busy, "Stubborn": stubborn, "Sleepy": sleepy, "Ticker": ticker,
             "Waits": waits, "Echo": echo, "Spin": spin}


async def test_a_busy_loop_job_times_out_within_seconds_and_the_executor_keeps_working(
        make_executor):
    ex = await make_executor("asyncio", FUNCTIONS, 10)
    began = time.monotonic()
    outcome = await ex.run(Task("Busy", [BLOCK_S], timeout=JOB_TIMEOUT_S, key="j1"))
    took = time.monotonic() - began
    assert isinstance(outcome.error, JobTimeout), outcome
    assert "blocking the event loop" in outcome.message
    assert took < PROMPT_S, took
    assert any("in `spin'" in line for line in outcome.backtrace), outcome.backtrace
    assert not any("_on_signal" in line for line in outcome.backtrace)
    assert (await ex.run(Task("Echo", ["next"]))).value == "next"
    stats = ex.stats()
    assert (stats.failed, stats.completed, stats.in_flight) == (1, 1, 0)


async def test_other_jobs_on_the_loop_carry_on_after_the_interrupt(make_executor):
    ex = await make_executor("asyncio", FUNCTIONS, 10)
    other = asyncio.ensure_future(ex.run(Task("Ticker", [20, 0.05])))
    await asyncio.sleep(0.1)
    outcome = await ex.run(Task("Busy", [BLOCK_S], timeout=JOB_TIMEOUT_S))
    assert isinstance(outcome.error, JobTimeout)
    assert (await other).value == 20  # its timers fired late, once, and it finished


async def test_a_plain_function_on_the_loop_is_interrupted_too(make_executor):
    ex = await make_executor("asyncio", FUNCTIONS, 10)
    outcome = await ex.run(Task("Spin", [BLOCK_S], timeout=JOB_TIMEOUT_S))
    assert isinstance(outcome.error, JobTimeout), outcome


async def test_catching_exception_does_not_swallow_the_interrupt(make_executor):
    ex = await make_executor("asyncio", FUNCTIONS, 10)
    began = time.monotonic()
    outcome = await ex.run(Task("Stubborn", [BLOCK_S], timeout=JOB_TIMEOUT_S))
    assert isinstance(outcome.error, JobTimeout), outcome
    assert time.monotonic() - began < PROMPT_S


async def test_time_sleep_on_the_main_thread_loop_is_cut_short(make_executor):
    """The interrupt reaches the main thread as a signal, which ends time.sleep early."""
    assert threading.current_thread() is threading.main_thread()
    ex = await make_executor("asyncio", FUNCTIONS, 10)
    began = time.monotonic()
    outcome = await ex.run(Task("Sleepy", [BLOCK_S], timeout=JOB_TIMEOUT_S))
    assert isinstance(outcome.error, JobTimeout), outcome
    assert time.monotonic() - began < PROMPT_S


async def test_a_job_without_timeout_is_reported_with_its_stack_but_left_alone(
        make_executor, caplog):
    ex = await make_executor("asyncio", FUNCTIONS, 10, blocked_warning_s=0.5)
    with caplog.at_level(logging.WARNING, logger=LOG):
        outcome = await ex.run(Task("Busy", [1.0], key="jid-123"))
    assert outcome.ok, outcome  # no deadline: blocking is reported, not punished
    (record,) = [r for r in caplog.records if r.name == LOG]
    text = record.getMessage()
    assert "blocked for" in text and "by job 'Busy' (jid-123)" in text
    assert "in spin" in text and "while time.monotonic() < end" in text


async def test_a_loop_blocked_outside_any_job_interrupts_nothing(make_executor, caplog):
    """An overdue job that is waiting (not on the stack) is never the one interrupted: the
    exception would land in whatever code is blocking the loop instead."""
    ex = await make_executor("asyncio", FUNCTIONS, 10, blocked_warning_s=0.5)
    waiting = asyncio.ensure_future(ex.run(Task("Waits", [BLOCK_S], timeout=0.2)))
    await asyncio.sleep(0.05)
    with caplog.at_level(logging.WARNING, logger=LOG):
        asyncio.get_running_loop().call_soon(spin, 1.2)  # loop code, not a job
        outcome = await waiting
    assert isinstance(outcome.error, JobTimeout)
    assert "interrupted" not in outcome.message  # its own asyncio timeout, once the loop ran
    assert any("outside any asyncio job" in r.getMessage() for r in caplog.records)


def test_a_loop_on_another_thread_is_interrupted_with_an_async_exception():
    """Signals reach only the main thread; a loop elsewhere gets PyThreadState_SetAsyncExc."""
    result: dict[str, Any] = {}

    async def main() -> None:
        ex = create_executor("asyncio", FUNCTIONS, 10)
        await ex.start()
        try:
            began = time.monotonic()
            result["outcome"] = await ex.run(Task("Busy", [BLOCK_S], timeout=JOB_TIMEOUT_S))
            result["took"] = time.monotonic() - began
            result["after"] = await ex.run(Task("Echo", [1]))
        finally:
            await ex.stop()

    thread = threading.Thread(target=lambda: asyncio.run(main()))
    thread.start()
    thread.join(BLOCK_S)
    assert not thread.is_alive()
    assert isinstance(result["outcome"].error, JobTimeout), result
    assert result["took"] < PROMPT_S and result["after"].value == 1


async def test_the_watchdog_stops_with_the_last_executor(make_executor):
    ex = await make_executor("asyncio", FUNCTIONS, 10)
    assert any(t.name == "conveyor-loop-watchdog" for t in threading.enumerate())
    await ex.stop()
    assert not WATCHDOG._watches


@pytest.mark.parametrize("delay_s", [0.0, 0.3])
async def test_cancel_still_works_inline(make_executor, delay_s):
    """Jobs run in the caller's task: cancel() cancels it and run() returns an outcome."""
    ex = await make_executor("asyncio", FUNCTIONS, 10)
    running = asyncio.ensure_future(ex.run(Task("Waits", [BLOCK_S], key="c1")))
    if delay_s:  # 0: cancelled before it ever started
        await asyncio.sleep(delay_s)
    assert ex.cancel("c1") is (delay_s > 0)
    outcome = await running
    assert outcome.error_class == "Cancelled"
    assert not running.cancelled() and running.get_loop() is asyncio.get_running_loop()
    assert (await ex.run(Task("Echo", [2]))).value == 2


async def test_a_timeout_error_of_the_job_itself_is_not_a_job_timeout(make_executor):
    async def own_timeout() -> None:
        raise TimeoutError("the database did not answer")

    ex = await make_executor("asyncio", {"Own": own_timeout}, 10)
    outcome = await ex.run(Task("Own", timeout=30))
    assert outcome.error_class == "TimeoutError" and "database" in outcome.message
