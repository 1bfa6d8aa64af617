"""Channels: the bound holds, statistics are right, end of stream and abort wake every waiter."""

from __future__ import annotations

import asyncio
import threading

import pytest

from conveyor.errors import ChannelClosed
from conveyor.pipeline import Channel, EndOfStream


def test_bound_is_required() -> None:
    with pytest.raises(ValueError, match="bound of at least 1"):
        Channel("c", 0)


def test_fifo_stats_and_end_of_stream() -> None:
    ch = Channel("c", 3, senders=2)
    for i in range(3):
        assert ch.put(i) == 0.0
    st = ch.stats()
    assert (st.used, st.peak, st.capacity, st.open_senders) == (3, 3, 3, 2)
    assert [ch.get(), ch.get()] == [0, 1]
    ch.close()
    assert ch.get() == 2  # one sender still open: not the end yet
    with pytest.raises(TimeoutError):
        ch.get(timeout=0.01)
    ch.close()
    with pytest.raises(EndOfStream):
        ch.get()
    assert ch.stats().peak == 3


def test_full_channel_blocks_sender_and_counts_waiters() -> None:
    ch = Channel("c", 1)
    ch.put("a")
    waited: list[float] = []
    sender = threading.Thread(target=lambda: waited.append(ch.put("b")))
    sender.start()
    while ch.stats().waiting_senders != 1:
        threading.Event().wait(0.001)
    assert ch.get() == "a"
    sender.join(5)
    assert ch.get() == "b"
    assert waited and waited[0] > 0


def test_abort_wakes_blocked_sender_and_receiver() -> None:
    full, empty = Channel("full", 1), Channel("empty", 1)
    full.put(0)
    errors: list[BaseException] = []

    def attempt(fn: object) -> None:
        try:
            fn()  # type: ignore[operator]
        except ChannelClosed as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=attempt, args=(lambda: full.put(1),)),
        threading.Thread(target=attempt, args=(empty.get,)),
    ]
    for t in threads:
        t.start()
    while full.stats().waiting_senders != 1 or empty.stats().waiting_receivers != 1:
        threading.Event().wait(0.001)
    full.abort()
    empty.abort()
    for t in threads:
        t.join(5)
        assert not t.is_alive()
    assert len(errors) == 2
    with pytest.raises(ChannelClosed):
        full.get()  # items left behind are not handed out after an abort


def test_put_after_all_senders_closed_is_an_error() -> None:
    ch = Channel("c", 2)
    ch.close()
    with pytest.raises(ChannelClosed, match="after all its senders"):
        ch.put(1)


async def test_async_side_waits_and_mixes_with_threads() -> None:
    ch = Channel("c", 2)
    ch.bind(asyncio.get_running_loop())
    got: list[int] = []

    async def receive() -> None:
        while True:
            try:
                got.extend(await ch.aget_many(10))
            except EndOfStream:
                return

    receiver = asyncio.ensure_future(receive())

    def send() -> None:
        for i in range(100):
            ch.put(i)
        ch.close()

    sender = threading.Thread(target=send)
    sender.start()
    await asyncio.wait_for(receiver, 10)
    sender.join(5)
    assert got == list(range(100))
    assert ch.stats().peak <= 2


async def test_abort_wakes_async_waiters() -> None:
    ch = Channel("c", 1)
    ch.bind(asyncio.get_running_loop())
    await ch.aput(1)
    putter = asyncio.ensure_future(ch.aput(2))
    other = Channel("d", 1)
    other.bind(asyncio.get_running_loop())
    getter = asyncio.ensure_future(other.aget())
    while ch.stats().waiting_senders != 1 or other.stats().waiting_receivers != 1:
        await asyncio.sleep(0)
    threading.Thread(target=ch.abort).start()  # from another thread, as a failing stage would
    other.abort()
    for task in (putter, getter):
        with pytest.raises(ChannelClosed):
            await asyncio.wait_for(task, 5)


async def test_cancelled_async_getter_passes_its_wakeup_on() -> None:
    ch = Channel("c", 4)
    ch.bind(asyncio.get_running_loop())
    first = asyncio.ensure_future(ch.aget())
    second = asyncio.ensure_future(ch.aget())
    while ch.stats().waiting_receivers != 2:
        await asyncio.sleep(0)
    ch.put("x")  # wakes `first` ...
    first.cancel()  # ... which is cancelled before it runs: `second` must get the item
    assert await asyncio.wait_for(second, 5) == "x"
