"""Bounded channels: the one place where items wait between stages.

A :class:`Channel` is a FIFO with a required bound, shared by threads (``put``/``get``) and by
coroutines on the run's event loop (``aput``/``aget``): thread stages, asyncio stages and the
feeders of process stages can all sit on either side of it. A full channel blocks its senders,
which is the whole backpressure mechanism; time spent blocked is returned to the sender so the
stage that waited can report it.

End of stream: a channel is made with the number of stages that send into it; each calls
:meth:`close` once when it has sent everything. When all have closed and the buffer is empty,
``get`` raises :class:`EndOfStream`. Cancellation: :meth:`abort` wakes every waiter, sync or
async, and from then on every put and get raises ``ChannelClosed``, so no error anywhere can
leave a stage blocked on a full or empty channel (pypeln #110, Minigun's fork hang).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from ..errors import ChannelClosed


class EndOfStream(Exception):
    """Every sender has finished and the channel is drained."""


@dataclass(frozen=True, slots=True)
class ChannelStats:
    """A channel's occupancy and waiters at one moment."""

    name: str
    capacity: int
    used: int
    peak: int
    waiting_senders: int
    waiting_receivers: int
    open_senders: int


class Channel:
    """A bounded, cancellable, multi-sender channel usable from threads and the event loop."""

    def __init__(self, name: str, capacity: int, senders: int = 1) -> None:
        if capacity < 1:
            raise ValueError(f"channel {name!r} needs a bound of at least 1, got {capacity}")
        self.name = name
        self.capacity = capacity
        self.peak = 0
        self._items: deque[Any] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._senders = senders
        self._aborted = False
        self._sync_getters = 0
        self._sync_putters = 0
        self._async_getters: deque[asyncio.Future[None]] = deque()
        self._async_putters: deque[asyncio.Future[None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach the event loop that async senders and receivers run on."""
        self._loop = loop
        self._loop_thread = threading.get_ident()

    # --- thread side ----------------------------------------------------------------------------
    def put(self, item: Any) -> float:
        """Append ``item``, waiting while full; returns the seconds spent waiting."""
        with self._lock:
            waited = 0.0
            if len(self._items) >= self.capacity or self._aborted or not self._senders:
                waited = self._wait_for_room()
            self._items.append(item)
            if len(self._items) > self.peak:
                self.peak = len(self._items)
            self._wake_receiver()
            return waited

    def get(self, timeout: float | None = None) -> Any:
        """Take the oldest item, waiting while empty.

        Raises EndOfStream once all senders closed and nothing is left, ChannelClosed after
        abort, TimeoutError when ``timeout`` seconds pass with nothing to take.
        """
        with self._lock:
            if not self._items or self._aborted:
                self._wait_for_item(timeout)
            item = self._items.popleft()
            self._wake_sender()
            return item

    def _wait_for_room(self) -> float:
        self._check_open_for_put()
        started = time.perf_counter()
        self._sync_putters += 1
        try:
            while len(self._items) >= self.capacity:
                self._not_full.wait()
                self._check_open_for_put()
        finally:
            self._sync_putters -= 1
        return time.perf_counter() - started

    def _wait_for_item(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        self._sync_getters += 1
        try:
            while True:
                if self._aborted:
                    raise ChannelClosed(f"channel {self.name!r} was closed: the run was cancelled")
                if self._items:
                    return
                if not self._senders:
                    raise EndOfStream(self.name)
                if deadline is None:
                    self._not_empty.wait()
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(self.name)
                    self._not_empty.wait(left)
        finally:
            self._sync_getters -= 1

    def _check_open_for_put(self) -> None:
        if self._aborted:
            raise ChannelClosed(f"channel {self.name!r} was closed: the run was cancelled")
        if not self._senders:
            raise ChannelClosed(f"put on channel {self.name!r} after all its senders closed it")

    # --- event-loop side ------------------------------------------------------------------------
    async def aput(self, item: Any) -> float:
        """Like :meth:`put`, awaiting instead of blocking the loop."""
        started = 0.0
        while True:
            with self._lock:
                if len(self._items) < self.capacity and not self._aborted and self._senders:
                    self._items.append(item)
                    if len(self._items) > self.peak:
                        self.peak = len(self._items)
                    self._wake_receiver()
                    return time.perf_counter() - started if started else 0.0
                self._check_open_for_put()
                waiter = self._new_waiter(self._async_putters)
            started = started or time.perf_counter()
            await self._await(waiter, self._async_putters, self._wake_sender)

    async def aget(self) -> Any:
        """Like :meth:`get` without a timeout, awaiting instead of blocking the loop."""
        while True:
            with self._lock:
                if self._items and not self._aborted:
                    item = self._items.popleft()
                    self._wake_sender()
                    return item
                waiter = self._check_empty_and_wait()
            await self._await(waiter, self._async_getters, self._wake_receiver)

    async def aget_many(self, limit: int) -> list[Any]:
        """Wait for at least one item, then take up to ``limit`` without waiting more."""
        while True:
            with self._lock:
                if self._items and not self._aborted:
                    count = min(limit, len(self._items))
                    taken = [self._items.popleft() for _ in range(count)]
                    for _ in range(count):
                        self._wake_sender()
                    return taken
                waiter = self._check_empty_and_wait()
            await self._await(waiter, self._async_getters, self._wake_receiver)

    def _check_empty_and_wait(self) -> asyncio.Future[None]:
        if self._aborted:
            raise ChannelClosed(f"channel {self.name!r} was closed: the run was cancelled")
        if not self._senders:
            raise EndOfStream(self.name)
        return self._new_waiter(self._async_getters)

    def _new_waiter(self, waiters: deque[asyncio.Future[None]]) -> asyncio.Future[None]:
        if self._loop is None:
            raise RuntimeError(f"channel {self.name!r} is used from a loop but was never bound")
        fut: asyncio.Future[None] = self._loop.create_future()
        waiters.append(fut)
        return fut

    async def _await(self, waiter: asyncio.Future[None], waiters: deque[Any], pass_on: Any) -> None:
        try:
            await waiter
        except asyncio.CancelledError:
            with self._lock:
                if waiter in waiters:
                    waiters.remove(waiter)
                else:  # we were woken and will not use it: hand the wake-up to the next waiter
                    pass_on()
            raise

    # --- waking -----------------------------------------------------------------------------------
    def _wake_receiver(self) -> None:
        if self._sync_getters:
            self._not_empty.notify()
        elif self._async_getters:
            self._resolve(self._async_getters.popleft())

    def _wake_sender(self) -> None:
        if self._sync_putters:
            self._not_full.notify()
        elif self._async_putters:
            self._resolve(self._async_putters.popleft())

    def _resolve(self, fut: asyncio.Future[None]) -> None:
        if threading.get_ident() == self._loop_thread:
            _set_result(fut)
        elif self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(_set_result, fut)

    def _wake_all(self) -> None:
        self._not_empty.notify_all()
        self._not_full.notify_all()
        while self._async_getters:
            self._resolve(self._async_getters.popleft())
        while self._async_putters:
            self._resolve(self._async_putters.popleft())

    # --- lifecycle --------------------------------------------------------------------------------
    def close(self) -> None:
        """One sender has sent everything it will send."""
        with self._lock:
            if self._senders > 0:
                self._senders -= 1
            if not self._senders:
                self._wake_all()

    def abort(self) -> None:
        """Cancel: wake every waiter; every later put and get raises ChannelClosed."""
        with self._lock:
            self._aborted = True
            self._wake_all()

    def __len__(self) -> int:
        return len(self._items)

    def stats(self) -> ChannelStats:
        return ChannelStats(
            name=self.name,
            capacity=self.capacity,
            used=len(self._items),
            peak=self.peak,
            waiting_senders=self._sync_putters + len(self._async_putters),
            waiting_receivers=self._sync_getters + len(self._async_getters),
            open_senders=self._senders,
        )


def _set_result(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
