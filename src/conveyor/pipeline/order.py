"""``ordered=True``: a bounded reorder buffer that releases outputs in input order.

Workers number items as they take them (taking and numbering happen under one lock, so the
numbers follow the channel's order), process them concurrently, and hand each item's outputs
back with its number. Outputs leave in number order. A worker may not take item ``n`` while
``n - window`` is still unfinished, so at most ``window`` items' outputs wait in the buffer:
ordering costs memory proportional to the window, never a full barrier (pypeln's ``ordered``
buffers the whole stream).

:class:`Reorderer` serves thread workers, :class:`AsyncReorderer` coroutines and process-pool
feeders (there one number covers a whole chunk). Both wake on abort.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import ChannelClosed

Flush = Callable[[list[Any]], None]
AsyncFlush = Callable[[list[Any]], Awaitable[None]]


class Reorderer:
    """Thread-side reorder buffer."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._take_lock = threading.Lock()
        self._cond = threading.Condition()
        self._next_seq = 0
        self._next_out = 0
        self._done: dict[int, list[Any]] = {}
        self._aborted = False

    def take(self, get: Callable[[], Any]) -> tuple[int, Any]:
        """Wait for room in the window, then take one item with ``get`` and number it."""
        with self._take_lock:
            with self._cond:
                while self._next_seq >= self._next_out + self.window:
                    self._check()
                    self._cond.wait()
                self._check()
            item = get()
            seq = self._next_seq
            self._next_seq += 1
            return seq, item

    def complete(self, seq: int, outputs: list[Any], flush: Flush) -> None:
        """Item ``seq`` is done; ``flush`` every output that is now in order."""
        with self._cond:
            self._done[seq] = outputs
            while self._next_out in self._done:
                self._check()
                flush(self._done.pop(self._next_out))
                self._next_out += 1
            self._cond.notify_all()

    @property
    def buffered(self) -> int:
        return len(self._done)

    def _check(self) -> None:
        if self._aborted:
            raise ChannelClosed("the run was cancelled")

    def abort(self) -> None:
        with self._cond:
            self._aborted = True
            self._cond.notify_all()


class AsyncReorderer:
    """Event-loop-side reorder buffer (single thread: no locks, only waits)."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._next_seq = 0
        self._next_out = 0
        self._done: dict[int, list[Any]] = {}
        self._room = asyncio.Condition()
        self._take_lock = asyncio.Lock()
        self._flushing = False

    async def take(self, get: Callable[[], Awaitable[Any]]) -> tuple[int, Any]:
        async with self._take_lock:
            async with self._room:
                await self._room.wait_for(lambda: self._next_seq < self._next_out + self.window)
            item = await get()
            seq = self._next_seq
            self._next_seq += 1
            return seq, item

    async def complete(self, seq: int, outputs: list[Any], flush: AsyncFlush) -> None:
        self._done[seq] = outputs
        if self._flushing:  # the coroutine already flushing will reach this one
            return
        self._flushing = True
        try:
            while self._next_out in self._done:
                await flush(self._done.pop(self._next_out))
                self._next_out += 1
                async with self._room:
                    self._room.notify_all()
        finally:
            self._flushing = False

    @property
    def buffered(self) -> int:
        return len(self._done)
