"""Routing, batching, ordering, nested pipelines, custom stages and async producers."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from conveyor.errors import PipelineError, StageFailed
from conveyor.pipeline import Pipeline, Stage, configure, defaults, restore


def test_broadcast_sends_every_item_to_every_branch() -> None:
    pipe = Pipeline()
    pipe.processor(lambda x: x, name="split", to=["a", "b"])
    pipe.processor(lambda x: ("a", x), name="a")
    pipe.processor(lambda x: ("b", x), name="b")
    result = pipe.run(range(5), collect=True)
    assert Counter(tag for tag, _ in result.outputs) == {"a": 5, "b": 5}


def test_round_robin_spreads_items() -> None:
    pipe = Pipeline()
    pipe.processor(lambda x: x, name="split", to=["a", "b"], fanout="round_robin")
    pipe.processor(lambda x: ("a", x), name="a")
    pipe.processor(lambda x: ("b", x), name="b")
    result = pipe.run(range(10), collect=True)
    assert Counter(tag for tag, _ in result.outputs) == {"a": 5, "b": 5}
    assert sorted(x for _, x in result.outputs) == list(range(10))


@pytest.mark.parametrize(
    "strategy", [{}, {"asyncio": 2}, {"processes": 2}], ids=["inline", "asyncio", "processes"]
)
def test_dynamic_routing_with_emit_to(strategy: dict[str, Any]) -> None:
    def classify(x: int, emit: Any) -> None:
        emit.to("small" if x < 5 else "large", x)

    if "asyncio" in strategy:

        async def classify_async(x: int, emit: Any) -> None:
            await emit.to("small" if x < 5 else "large", x)

        chosen: Any = classify_async
    else:
        chosen = classify
    pipe = Pipeline()
    pipe.processor(chosen, name="classify", to=["small", "large"], **strategy)
    pipe.processor(lambda x: ("small", x), name="small")
    pipe.processor(lambda x: ("large", x), name="large")
    result = pipe.run(range(10), collect=True)
    assert sorted(result.outputs) == sorted(
        [("small", x) for x in range(5)] + [("large", x) for x in range(5, 10)]
    )


def test_emit_to_an_undeclared_stage_fails_with_a_hint() -> None:
    pipe = Pipeline()
    pipe.processor(lambda x, emit: emit.to("elsewhere", x), name="router")
    pipe.consumer(lambda x: None, name="sink")
    with pytest.raises(StageFailed, match="not one of its outputs \\(sink\\); name it in"):
        pipe.run([1])


def test_fan_in_from_two_producers_ends_after_both() -> None:
    pipe = Pipeline()
    pipe.producer(lambda: range(100), name="a", to="merge")
    pipe.producer(lambda: range(100, 150), name="b", to="merge")
    pipe.processor(lambda x: x, name="merge", threads=2)
    result = pipe.run(collect=True)
    assert sorted(result.outputs) == list(range(150))


def test_batch_by_size_and_unbatch() -> None:
    pipe = Pipeline()
    pipe.batch(4)
    pipe.processor(lambda batch: [sum(batch), len(batch)], name="total")
    result = pipe.run(range(10), collect=True)
    assert result.outputs == [[6, 4], [22, 4], [17, 2]]
    pipe = Pipeline()
    pipe.batch(3)
    pipe.unbatch()
    assert pipe.run(range(7), collect=True).outputs == list(range(7))


def test_batch_flushes_after_max_wait_without_more_input() -> None:
    got_batch = threading.Event()
    batches: list[list[int]] = []

    def trickle() -> Any:
        yield from (1, 2, 3)
        assert got_batch.wait(5), "the partial batch never came"
        yield 4

    def sink(batch: list[int]) -> None:
        batches.append(batch)
        got_batch.set()

    pipe = Pipeline()
    pipe.producer(trickle)
    pipe.batch(100, max_wait=0.05)
    pipe.consumer(sink, name="sink")
    pipe.run()
    assert batches == [[1, 2, 3], [4]]


def test_ordered_keeps_input_order_with_a_bounded_buffer() -> None:
    pipe = Pipeline()

    @pipe.processor(threads=4, ordered=True, reorder_window=8)
    def jitter(x: int) -> int:
        time.sleep(random.random() / 500)
        return x

    result = pipe.run(range(200), collect=True)
    assert result.outputs == list(range(200))


def test_custom_stage_class_with_finish() -> None:
    class Dedup(Stage):
        single_worker = True

        def start(self) -> None:
            self.seen: set[Any] = set()

        def process(self, item: Any, emit: Any) -> None:
            if item not in self.seen:
                self.seen.add(item)
                emit(item)

        def finish(self, emit: Any) -> None:
            emit(("distinct", len(self.seen)))

    pipe = Pipeline()
    pipe.add(Dedup("dedup"))
    result = pipe.run([1, 2, 1, 3, 2], collect=True)
    assert result.outputs == [1, 2, 3, ("distinct", 3)]


def test_nested_pipeline_runs_inside_the_parent() -> None:
    clean = Pipeline("clean")
    clean.processor(str.strip, name="strip")
    clean.processor(str.lower, name="lower", threads=2)
    pipe = Pipeline("main")
    pipe.add(clean)
    pipe.processor(lambda s: s + "!", name="shout")
    result = pipe.run(["  A", "B  "], collect=True)
    assert sorted(result.outputs) == ["a!", "b!"]
    assert [s.name for s in result.stats.stages] == [
        "source",
        "clean.strip",
        "clean.lower",
        "shout",
    ]


def test_async_producer_and_consumer() -> None:
    pipe = Pipeline()
    got: list[int] = []

    @pipe.producer
    async def ticks() -> AsyncIterator[int]:
        for i in range(20):
            await asyncio.sleep(0)
            yield i

    @pipe.consumer(asyncio=4)
    async def store(x: int) -> None:
        await asyncio.sleep(0.001)
        got.append(x)

    pipe.run()
    assert sorted(got) == list(range(20))


def test_async_emit_awaited_gives_backpressure() -> None:
    pipe = Pipeline()

    @pipe.processor(asyncio=1)
    async def explode(x: int, emit: Any) -> None:
        for i in range(50):
            await emit(i)  # downstream holds 2: this must wait, not buffer 50

    pipe.processor(lambda x: x, name="slow", queue_size=2)
    result = pipe.run([0], collect=True)
    assert sorted(result.outputs) == list(range(50))
    assert result.stats.stage("explode").blocked_s > 0


def test_stats_json_and_bottleneck() -> None:
    pipe = Pipeline()
    pipe.processor(lambda x: x, name="fast")
    pipe.processor(lambda x: time.sleep(0.002) or x, name="slow")
    result = pipe.run(range(100))
    data = orjson.loads(result.to_json())
    assert data["bottleneck"] == "slow"
    slow = result.stats.stage("slow")
    assert slow.bottleneck and slow.items_in == 100 and slow.latency_p50_ms is not None
    assert 1.5 <= slow.latency_p50_ms <= 10
    assert data["edges"] == [["source", "fast"], ["fast", "slow"]]
    assert result.stats.stage("fast").queue_capacity == defaults().queue_size


def test_global_defaults_set_in_one_place() -> None:
    previous = configure(queue_size=7, deterministic=True)
    try:
        pipe = Pipeline()
        pipe.processor(lambda x: threading.current_thread().name, name="where", threads=4)
        result = pipe.run([1, 2], collect=True)
        assert result.outputs == [threading.current_thread().name] * 2
        assert result.stats.stage("where").strategy == "deterministic"
    finally:
        restore(previous)
    previous = configure(queue_size=7)
    try:
        pipe = Pipeline()
        pipe.processor(lambda x: x, name="p")
        assert pipe.run([1]).stats.stage("p").queue_capacity == 7
    finally:
        restore(previous)
    with pytest.raises(TypeError, match="unknown pipeline defaults"):
        configure(queue_sise=3)


def test_run_inside_an_event_loop_points_to_run_async() -> None:
    pipe = Pipeline()
    pipe.processor(lambda x: x + 1, name="inc")

    async def main() -> Any:
        with pytest.raises(PipelineError, match="use run_async"):
            pipe.run([1])
        return await pipe.run_async([1], collect=True)

    assert asyncio.run(main()).outputs == [2]
