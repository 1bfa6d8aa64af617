"""The ``inline`` and ``threads=N`` strategies: real threads pulling from the stage's channel.

``inline`` is one thread that takes items one at a time; ``threads=N`` is N threads, each
taking the next item as soon as it is free (so 20 items of 50 ms on ``threads=5`` take about
200 ms, where Minigun's "pool" ran one thread). Producers run here too, one thread each.

Sync stage code is called directly in the worker thread rather than through the executor
contract: a trip through an event loop per item costs tens of microseconds, the direct call
about one, and the pipeline's hop cost is what these strategies are for. The out-of-process
strategies (``pool.py``) do go through the executors.

A thread stuck inside user code cannot be interrupted. When the run fails it stops waiting for
such threads after the shutdown grace; they are daemon threads and their late output is
dropped, because every channel they could write to is aborted.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ..errors import ChannelClosed
from .calls import SyncCall
from .channel import EndOfStream
from .driver import Driver
from .emit import BufferEmitter, Emitter
from .order import Reorderer
from .policy import Action
from .stage import Stage
from .stats import WorkerStats


class ThreadDriver(Driver):
    """Runs a stage on one or more threads."""

    def start(self) -> None:
        self._call: SyncCall = self.spec.stage.sync_call()
        gate = self.run.context_gate(self.spec)
        if gate is not None:
            self._call = _gated(self._call, gate)
        self._reorder: Reorderer | None = None
        if self.spec.ordered and len(self.workers) > 1:
            self._reorder = Reorderer(self.spec.reorder_window)
        self.threads = [
            threading.Thread(
                target=self._work, args=(i,), name=f"conveyor-{self.name}-{i}", daemon=True
            )
            for i in range(len(self.workers))
        ]
        for t in self.threads:
            t.start()

    _reorder: Reorderer | None = None

    def abort(self) -> None:
        if self._reorder is not None:
            self._reorder.abort()

    def _work(self, index: int) -> None:
        ws = self.workers[index]
        ok = False
        try:
            state = self.spec.init() if self.spec.init else None
            if self.spec.kind == "producer":
                self._produce(ws, state)
            elif self._reorder is not None:
                self._ordered(ws, state)
            elif type(self.spec.stage).wait_s is not Stage.wait_s:
                self._timed(ws, state)
            else:
                self._plain(ws, state)
            ok = True
        except BaseException as exc:
            self.fail(exc)
        finally:
            self._exited(ok, ws)

    def _exited(self, ok: bool, ws: WorkerStats) -> None:
        if not self.worker_exited(ok):
            return
        try:
            if self.should_finish:
                self.spec.stage.finish(self.outputs.emitter(ws))
                self.close()
        except BaseException as exc:
            self.fail(exc)
        finally:
            self.mark_done()

    def _produce(self, ws: WorkerStats, state: Any) -> None:
        emit = self.outputs.emitter(ws)
        run = self.run
        if run.pausable:

            def pausing(item: Any) -> None:
                if run.paused:
                    run.wait_resumed()
                emit(item)

            pausing.to = emit.to  # type: ignore[attr-defined]
            self._call(None, pausing, state)
        else:
            self._call(None, emit, state)

    def _plain(self, ws: WorkerStats, state: Any) -> None:
        assert self.inbox is not None
        get, call, emit = self.inbox.get, self._call, self.outputs.emitter(ws)
        record, perf = ws.latency.record, time.perf_counter
        while True:
            try:
                item = get()
            except EndOfStream:
                return
            ws.items_in += 1
            ws.current = 1
            blocked = ws.blocked_s
            started = perf()
            try:
                call(item, emit, state)
            except ChannelClosed:
                raise
            except Exception as exc:
                self._failed(item, exc, emit, state, ws)
            took = perf() - started
            ws.busy_s += took
            record(took - (ws.blocked_s - blocked))
            ws.current = 0

    def _timed(self, ws: WorkerStats, state: Any) -> None:
        """The loop for stages that want waking without input (batch with ``max_wait``)."""
        assert self.inbox is not None
        stage, emit = self.spec.stage, self.outputs.emitter(ws)
        while True:
            try:
                item = self.inbox.get(stage.wait_s())
            except TimeoutError:
                stage.tick(emit)
                continue
            except EndOfStream:
                return
            ws.items_in += 1
            started = time.perf_counter()
            try:
                self._call(item, emit, state)
            except ChannelClosed:
                raise
            except Exception as exc:
                self._failed(item, exc, emit, state, ws)
            took = time.perf_counter() - started
            ws.busy_s += took
            ws.latency.record(took)

    def _ordered(self, ws: WorkerStats, state: Any) -> None:
        assert self.inbox is not None and self._reorder is not None
        get, take = self.inbox.get, self._reorder.take

        def flush(pairs: list[Any]) -> None:
            self.outputs.send(pairs, ws)

        while True:
            try:
                seq, item = take(get)
            except EndOfStream:
                return
            ws.items_in += 1
            ws.current = 1
            emit = BufferEmitter()
            started = time.perf_counter()
            try:
                self._call(item, emit, state)
            except ChannelClosed:
                raise
            except Exception as exc:
                emit.items.clear()
                self._failed(item, exc, emit, state, ws)
            took = time.perf_counter() - started
            ws.busy_s += took
            ws.latency.record(took)
            self._reorder.complete(seq, emit.items, flush)
            ws.current = 0

    def _failed(
        self,
        item: Any,
        error: Exception,
        emit: Emitter | BufferEmitter,
        state: Any,
        ws: WorkerStats,
    ) -> None:
        """Apply the stage's error policy to a failed item; raises to fail the run."""
        attempt = 1
        while True:
            action, delay = self.decide(attempt, ws)
            if action is Action.RETRY:
                if delay and self.run.sleep(delay):
                    raise ChannelClosed("the run was cancelled during a retry backoff")
                try:
                    self._call(item, emit, state)
                    return
                except ChannelClosed:
                    raise
                except Exception as exc:
                    error = exc
                    attempt += 1
                    continue
            if action is Action.DEAD_LETTER:
                self.send_dead_letter(item, error, attempt)
            elif action is Action.RAISE:
                raise error
            return


def _gated(call: SyncCall, gate: threading.Semaphore) -> SyncCall:
    """Hold a permit of the shared execution context while the item runs."""

    def gated(item: Any, emit: Any, state: Any) -> None:
        with gate:
            call(item, emit, state)

    return gated
