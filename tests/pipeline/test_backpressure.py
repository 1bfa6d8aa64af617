"""Backpressure: a fast producer never gets further ahead of a slow consumer than the queues
allow, and memory stays flat however long the stream."""

from __future__ import annotations

import itertools
import threading
import time

import psutil
import pytest

from conveyor.pipeline import Pipeline


def test_items_in_flight_never_exceed_the_sum_of_the_bounds() -> None:
    lock = threading.Lock()
    produced = consumed = most = 0

    def fast() -> object:
        nonlocal produced, most
        for i in range(400):
            with lock:
                produced += 1
                most = max(most, produced - consumed)
            yield i

    def slow(x: int) -> None:
        nonlocal consumed
        time.sleep(0.0005)
        with lock:
            consumed += 1

    pipe = Pipeline()
    pipe.producer(fast)
    pipe.processor(lambda x: x, name="a", threads=2, queue_size=5)
    pipe.processor(lambda x: x, name="b", queue_size=3)
    pipe.consumer(slow, name="sink", queue_size=4)
    result = pipe.run()
    # queued: 5 + 3 + 4; held by workers: 2 + 1 + 1; held by the blocked producer: 1
    bound = (5 + 3 + 4) + (2 + 1 + 1) + 1
    assert consumed == 400
    assert most <= bound, most
    assert most >= 12  # the queues did fill: the producer really was held back
    assert result.stats.stage("fast").blocked_s > 0
    for name, cap in (("a", 5), ("b", 3), ("sink", 4)):
        assert result.stats.stage(name).queue_peak <= cap


@pytest.mark.slow
def test_memory_is_flat_over_a_million_items() -> None:
    total = 1_000_000
    process = psutil.Process()
    rss: dict[str, int] = {}

    def sink(x: int) -> None:
        if x == 100_000:
            rss["early"] = process.memory_info().rss

    pipe = Pipeline()
    pipe.producer(lambda: itertools.islice(itertools.count(), total), name="numbers")
    pipe.processor(lambda x: x * 2, name="double", threads=2, queue_size=500)
    pipe.batch(100)
    pipe.unbatch()
    pipe.consumer(sink, name="sink", queue_size=500)
    result = pipe.run()
    rss["late"] = process.memory_info().rss
    assert result.stats.stage("sink").items_in == total
    # a leak of one small int per item would be ~30 MB; allow allocator noise
    assert rss["late"] - rss["early"] < 8 * 1024 * 1024, rss
    assert result.stats.stage("double").queue_peak <= 500
