"""Error policies, and no hangs: the first error ends the run promptly in every strategy, even
with every queue upstream full (pypeln #110, Minigun's forked-stage hang)."""

from __future__ import annotations

import gc
import itertools
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor.errors import SerializationError, StageFailed, WorkerLost
from conveyor.pipeline import Pipeline, configure, restore, retry

# A known defect outside the pipeline (reported): ProcessExecutor.stop() cancels a respawn that
# may be inside Zygote.spawn's ``open_unix_connection``, which leaks that socketpair. The tests
# below stop a pool right after a worker died, so they can hit it; the leak is collected inside
# the test so it cannot surface in a later one.
KNOWN_RESPAWN_LEAK = pytest.mark.filterwarnings(
    "ignore::pytest.PytestUnraisableExceptionWarning", "ignore::ResourceWarning"
)

PROMPT_S = 5.0  # "promptly": far below the per-test timeout, far above a healthy shutdown


class Boom(Exception):
    pass


STRATEGIES: list[dict[str, Any]] = [
    {},
    {"threads": 3},
    {"asyncio": 3},
    {"processes": 2},
    {"forks": 2},
]


def endless() -> Iterator[int]:
    yield from itertools.count()


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: next(iter(s), "inline"))
def test_error_with_full_queues_ends_the_run_promptly(strategy: dict[str, Any]) -> None:
    pipe = Pipeline()
    pipe.producer(endless, name="firehose")
    pipe.processor(lambda x: x, name="relay", queue_size=2)

    def explode(x: int) -> int:
        if x == 50:  # CLOCK_MONOTONIC is one clock for every process of the machine
            raise Boom(f"item {x} raised at {time.monotonic()}")
        return x

    if "asyncio" in strategy:

        async def explode_async(x: int) -> int:
            return explode(x)

        pipe.processor(explode_async, name="explode", queue_size=2, **strategy)
    else:
        pipe.processor(explode, name="explode", queue_size=2, **strategy)
    pipe.consumer(lambda x: None, name="sink", queue_size=2)

    with pytest.raises(StageFailed) as info:
        pipe.run()
    # From the raise to run() returning: the time to reach item 50 is not what is measured
    # (forks=2 took 5.4 s to get there on a loaded 2-core machine, 0.5-3 s usually).
    returned_at = time.monotonic()
    assert info.value.stage == "explode"
    assert "Boom" in str(info.value) and "item 50" in str(info.value)
    raised_at = float(str(info.value).rsplit("raised at ", 1)[1].split()[0])
    assert returned_at - raised_at < PROMPT_S
    assert pipe.current is not None
    stats = pipe.current.snapshot()
    assert stats.state == "failed"
    assert stats.stage("relay").queue_peak == 2  # the queues really were full


def test_raise_chains_the_original_error_in_process() -> None:
    pipe = Pipeline()
    pipe.processor(lambda x: 1 / x, name="invert")
    with pytest.raises(StageFailed) as info:
        pipe.run([1, 0, 2])
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert info.value.error is info.value.__cause__


def test_skip_counts_and_drops_failed_items() -> None:
    pipe = Pipeline()
    pipe.processor(lambda x: 10 // x, name="div", on_error="skip", threads=2)
    result = pipe.run([1, 0, 2, 0, 5], collect=True)
    assert sorted(result.outputs) == [2, 5, 10]
    div = result.stats.stage("div")
    assert (div.items_in, div.items_out, div.failed, div.skipped) == (5, 3, 2, 2)


@pytest.mark.parametrize(
    "strategy", [{}, {"asyncio": 2}, {"processes": 2}], ids=["inline", "asyncio", "processes"]
)
def test_retry_reruns_until_success(strategy: dict[str, Any], tmp_path: Any) -> None:
    """Each item fails twice, then works; counts live in files so process workers share them."""

    def flaky(x: int) -> int:
        marker = tmp_path / f"{x}"
        tries = int(marker.read_text()) if marker.exists() else 0
        marker.write_text(str(tries + 1))
        if tries < 2:
            raise Boom(f"try {tries}")
        return x

    pipe = Pipeline()
    pipe.processor(flaky, name="flaky", on_error=retry(2, backoff=0.001), **strategy)
    result = pipe.run(range(6), collect=True)
    assert sorted(result.outputs) == list(range(6))
    stage = result.stats.stage("flaky")
    assert (stage.retried, stage.failed) == (12, 0)


def test_retry_exhausted_then_skip_or_raise() -> None:
    def always(x: int) -> int:
        raise Boom("no")

    pipe = Pipeline()
    pipe.processor(always, name="a", on_error=retry(1, then="skip"))
    stats = pipe.run([1, 2]).stats.stage("a")
    assert (stats.retried, stats.failed, stats.skipped) == (2, 2, 2)
    pipe = Pipeline()
    pipe.processor(always, name="a", on_error=retry(1))
    with pytest.raises(StageFailed, match="Boom: no"):
        pipe.run([1])


@pytest.mark.parametrize(
    "strategy", [{}, {"asyncio": 2}, {"processes": 2}], ids=["inline", "asyncio", "processes"]
)
def test_dead_letter_stage_gets_a_record_per_failed_item(strategy: dict[str, Any]) -> None:
    def check(x: int) -> int:
        if x % 3 == 0:
            raise ValueError(f"bad {x}")
        return x

    pipe = Pipeline()
    pipe.processor(check, name="check", dead_letter="dlq", **strategy)
    pipe.consumer(lambda x: None, name="ok", from_="check")
    letters: list[dict[str, Any]] = []
    pipe.consumer(letters.append, name="dlq")
    result = pipe.run(range(7))
    assert sorted(r["item"] for r in letters) == [0, 3, 6]
    first = min(letters, key=lambda r: r["item"])
    assert first["stage"] == "check" and first["error_class"] == "ValueError"
    assert "bad 0" in first["message"]
    assert result.stats.stage("check").dead_lettered == 3
    assert result.stats.stage("ok").items_in == 4


def test_dead_letter_callable() -> None:
    got: list[tuple[Any, str]] = []
    pipe = Pipeline()
    pipe.processor(
        lambda x: 1 // x,
        name="inv",
        dead_letter=lambda item, err: got.append((item, type(err).__name__)),
    )
    pipe.run([0, 1])
    assert got == [(0, "ZeroDivisionError")]


def test_producer_error_fails_the_run() -> None:
    def broken() -> Iterator[int]:
        yield 1
        raise Boom("source broke")

    pipe = Pipeline()
    pipe.producer(broken)
    pipe.consumer(lambda x: None, name="sink")
    with pytest.raises(StageFailed, match="source broke") as info:
        pipe.run()
    assert info.value.stage == "broken"


def test_thread_stuck_in_user_code_does_not_hold_the_run() -> None:
    release = threading.Event()
    previous = configure(shutdown_grace_s=0.2)
    try:
        pipe = Pipeline()

        @pipe.processor(threads=2, name="stuck")
        def stuck(x: int) -> int:
            if x == 0:
                release.wait(30)  # a call that ignores cancellation
            return x

        @pipe.processor(name="fail")
        def fail(x: int) -> int:
            raise Boom("downstream")

        started = time.perf_counter()
        with pytest.raises(StageFailed, match="downstream"):
            pipe.run(range(10))
        assert time.perf_counter() - started < PROMPT_S
    finally:
        release.set()
        restore(previous)


def test_unserializable_item_for_process_stage_names_the_stage() -> None:
    pipe = Pipeline()
    pipe.processor(lambda x: x, name="crunch", processes=1)
    with pytest.raises(StageFailed) as info:
        pipe.run([1, {2, 3}, 4])
    assert isinstance(info.value.error, SerializationError)
    assert "stage 'crunch' runs out of process" in str(info.value)
    pipe = Pipeline()
    pipe.processor(lambda x: x, name="crunch", processes=1, on_error="skip")
    result = pipe.run([1, {2, 3}, 4], collect=True)
    assert sorted(result.outputs) == [1, 4]
    assert result.stats.stage("crunch").skipped == 1


def test_unserializable_output_fails_only_its_item() -> None:
    pipe = Pipeline()
    pipe.processor(lambda x: {x} if x == 2 else x, name="crunch", processes=1, on_error="skip")
    result = pipe.run([1, 2, 3], collect=True)
    assert sorted(result.outputs) == [1, 3]


@KNOWN_RESPAWN_LEAK
def test_sigkilled_worker_fails_the_run_with_its_exit_reason() -> None:
    def fatal(x: int) -> int:
        if x == 7:
            os.kill(os.getpid(), signal.SIGKILL)
        return x

    pipe = Pipeline()
    pipe.processor(fatal, name="fatal", processes=2)
    with pytest.raises(StageFailed) as info:
        pipe.run(range(20))
    assert isinstance(info.value.error, WorkerLost)
    assert "SIGKILL" in str(info.value)
    gc.collect()


def test_sigkilled_worker_is_replaced_and_only_its_item_fails() -> None:
    def fatal(x: int) -> int:
        if x == 7:
            os.kill(os.getpid(), signal.SIGKILL)
        return x

    pipe = Pipeline()
    pipe.processor(fatal, name="fatal", processes=2, on_error="skip")
    result = pipe.run(range(40), collect=True)
    assert sorted(result.outputs) == [x for x in range(40) if x != 7]
    stage = result.stats.stage("fatal")
    assert stage.failed == 1 and stage.restarts >= 1
    assert any("SIGKILL" in note for note in stage.notes)


def test_worker_killed_from_outside_loses_no_items() -> None:
    """SIGKILL one busy worker mid-run: its chunk is re-run and every item arrives."""
    killed: list[int] = []

    def slow(x: int) -> list[int]:
        time.sleep(0.01)
        return [x, os.getpid()]

    def kill_first_worker(pair: list[int]) -> list[int]:
        if not killed:
            killed.append(pair[1])
            os.kill(pair[1], signal.SIGKILL)
        return pair

    pipe = Pipeline()
    pipe.processor(slow, name="slow", processes=2)
    pipe.processor(kill_first_worker, name="killer")
    result = pipe.run(range(60), collect=True)
    assert sorted(x for x, _ in result.outputs) == list(range(60))
    assert killed
    assert result.stats.stage("slow").failed == 0


@KNOWN_RESPAWN_LEAK
def test_workers_that_keep_dying_fail_the_stage() -> None:
    pipe = Pipeline()
    pipe.processor(
        lambda x: os.kill(os.getpid(), signal.SIGKILL),
        name="doomed",
        processes=1,
        on_error="skip",
        max_restarts=2,
    )
    with pytest.raises(StageFailed, match=r"3 worker processes died within 60s"):
        pipe.run(range(10))
    gc.collect()
