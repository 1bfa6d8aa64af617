"""The ``asyncio=N`` strategy: N coroutines on the run's event loop pulling from the channel.

Stage code is ``async def`` (a coroutine or an async generator); many items are in flight at
once while they await I/O. ``emit(x)`` buffers until the call returns, and the outputs of a
failed attempt are dropped, so a retried item sends each output once; ``await emit(x)`` sends
at once, waiting while downstream is full. A plain function given ``asyncio=N`` runs on the loop
too, so it must not block. ``timeout=`` cancels an item that runs too long (``JobTimeout``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..errors import ChannelClosed, JobTimeout
from .calls import AsyncCall
from .channel import EndOfStream
from .driver import Driver
from .emit import AsyncEmitter
from .order import AsyncReorderer
from .policy import Action
from .stats import WorkerStats

PAUSE_POLL_S = 0.05  # how often a paused async producer looks at the pause switch


class AsyncDriver(Driver):
    """Runs a stage as coroutines on the run's loop."""

    tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._call: AsyncCall = self.spec.stage.async_call()
        self._gate = self.run.context_gate_async(self.spec)
        self._reorder = None
        if self.spec.ordered and len(self.workers) > 1:
            self._reorder = AsyncReorderer(self.spec.reorder_window)
        self.tasks = [
            self.run.loop.create_task(self._work(i), name=f"conveyor-{self.name}-{i}")
            for i in range(len(self.workers))
        ]

    async def stop(self, grace_s: float) -> None:
        for task in self.tasks:
            task.cancel()

    async def _work(self, index: int) -> None:
        ws = self.workers[index]
        ok = False
        try:
            state = await _maybe_await(self.spec.init()) if self.spec.init else None
            if self.spec.kind == "producer":
                await self._produce(ws, state)
            else:
                await self._consume(ws, state)
            ok = True
        except asyncio.CancelledError:
            pass
        except BaseException as exc:
            self.fail(exc)
        finally:
            await self._exited(ok, ws)

    async def _exited(self, ok: bool, ws: WorkerStats) -> None:
        if not self.worker_exited(ok):
            return
        try:
            if self.should_finish:
                emit = AsyncEmitter(self.outputs, ws)
                self.spec.stage.finish(emit)
                await emit.flush()
                self.close()
        except BaseException as exc:
            self.fail(exc)
        finally:
            self.mark_done()

    async def _produce(self, ws: WorkerStats, state: Any) -> None:
        emit = _PausingEmitter(self.outputs, ws, self.run) if self.run.pausable else None
        await self._call(None, emit or AsyncEmitter(self.outputs, ws), state)
        if emit is not None:
            await emit.flush()

    async def _consume(self, ws: WorkerStats, state: Any) -> None:
        assert self.inbox is not None
        aget = self.inbox.aget
        emit = AsyncEmitter(self.outputs, ws)
        reorder = self._reorder
        while True:
            try:
                seq, item = await reorder.take(aget) if reorder else (0, await aget())
            except EndOfStream:
                return
            ws.items_in += 1
            ws.current += 1
            started = time.perf_counter()
            try:
                await self._attempt(item, emit, state)
            except ChannelClosed:
                raise
            except Exception as exc:
                emit.items.clear()
                await self._failed(item, exc, emit, state, ws)
            took = time.perf_counter() - started
            ws.busy_s += took
            ws.latency.record(took)
            ws.current -= 1
            if reorder is not None:
                pairs, emit.items = emit.items, []
                await reorder.complete(seq, pairs, lambda p: self.outputs.asend(p, ws))
            else:
                await emit.flush()

    async def _attempt(self, item: Any, emit: AsyncEmitter, state: Any) -> None:
        call = self._call(item, emit, state)
        if self._gate is not None:
            async with self._gate:
                await self._timed(call)
        else:
            await self._timed(call)

    async def _timed(self, call: Any) -> None:
        if self.spec.timeout is None:
            await call
            return
        try:
            await asyncio.wait_for(call, self.spec.timeout)
        except TimeoutError:
            raise JobTimeout(
                f"stage {self.name!r}: an item ran past its timeout of {self.spec.timeout}s"
            ) from None

    async def _failed(
        self, item: Any, error: Exception, emit: AsyncEmitter, state: Any, ws: WorkerStats
    ) -> None:
        attempt = 1
        while True:
            action, delay = self.decide(attempt, ws)
            if action is Action.RETRY:
                if delay:
                    await asyncio.sleep(delay)
                try:
                    await self._attempt(item, emit, state)
                    return
                except ChannelClosed:
                    raise
                except Exception as exc:
                    emit.items.clear()
                    error = exc
                    attempt += 1
                    continue
            if action is Action.DEAD_LETTER:
                await self.asend_dead_letter(item, error, attempt)
            elif action is Action.RAISE:
                raise error
            return


class _PausingEmitter(AsyncEmitter):
    """A producer's emit that holds while the HUD has paused the run."""

    __slots__ = ("_run",)

    def __init__(self, outputs: Any, stats: WorkerStats, run: Any) -> None:
        super().__init__(outputs, stats)
        self._run = run

    async def send(self, item: Any) -> None:
        while self._run.paused and not self._run.failed:
            await asyncio.sleep(PAUSE_POLL_S)
        await super().send(item)


async def _maybe_await(value: Any) -> Any:
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        return await value
    return value
