"""``processes=N``, ``forks=N`` and ``interpreters=N``: stages run through the process executors.

Each pool is a ``ProcessExecutor`` (persistent workers) or ``ForkExecutor`` (a fork per task from
a zygote) built through ``create_executor``; stages sharing a named context share one executor.
Items go in chunks: feeder coroutines (two per worker, so a worker never waits for its next
chunk) take what the input channel holds, up to a size that adapts so a chunk takes about
``CHUNK_TARGET_S`` (one item at first, until items have been timed; never more than a fair share
of what is queued, so a short stream still spreads over every worker).

Failures: an item that raises fails alone (see ``remote.py``) and goes through the stage's
policy. A worker process that dies fails its chunk with ``WorkerLost`` (the executor says how it
died and replaces it); the chunk's items are then re-run one per task so that only the item that
kills its worker fails. More than ``max_restarts`` deaths within ``restart_window_s`` fail the
stage: a stage whose workers keep dying should stop, not spin.

``interpreters=N``: sub-interpreters need Python 3.14's ``concurrent.interpreters``; this engine
does not implement them yet on any Python, so ``parse_strategy`` turns such a stage into
``processes=N`` (its stats strategy reads ``processes=N (asked interpreters=N)``) and the driver
says so in a warning on the ``conveyor.pipeline`` logger and in the stage's stats notes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
from collections import deque
from typing import Any

from ..errors import ChannelClosed, ConfigurationError, SerializationError, WorkerLost
from ..executors import Executor, Outcome, Task, create_executor
from .aio import AsyncDriver
from .order import AsyncReorderer
from .policy import Action
from .remote import NANOS, ChunkRunner
from .stats import WorkerStats
from .wire import unencodable

log = logging.getLogger("conveyor.pipeline")
CHUNK_TARGET_S = 0.05
FEEDERS_PER_WORKER = 2
EXECUTOR_KINDS = {"processes": "process", "forks": "fork", "interpreters": "process"}
Pairs = list[tuple[str | None, Any]]


class StageItemError(Exception):
    """An item's error raised in a worker process; ``error_class`` is the original class."""

    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(f"{error_class}: {message}")
        self.error_class = error_class


def interpreters_note(size: int) -> str:
    """What an ``interpreters=N`` stage logs and notes: it runs on processes, and why."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return (
        f"interpreters={size}: sub-interpreter stages are not implemented in this engine yet "
        f"(they would use concurrent.interpreters, Python 3.14+; this is Python {python}), "
        f"so the stage is running on processes={size}"
    )


def make_pool_driver(kind: str) -> type[AsyncDriver]:
    if kind in EXECUTOR_KINDS:
        return PoolDriver
    if kind == "distributed":
        from .distributed import QueueDriver

        return QueueDriver
    raise ConfigurationError(f"no driver for strategy {kind!r}")


class PoolDriver(AsyncDriver):
    """Feeds a stage's items to a process or fork executor in chunks."""

    uses_pool = True

    def worker_count(self) -> int:
        return self.spec.strategy.size

    async def prepare(self) -> None:
        self._notes: list[str] = []
        if self.spec.strategy.requested.startswith("interpreters"):
            note = interpreters_note(self.spec.strategy.size)
            log.warning("stage %r: %s", self.name, note)
            self._notes.append(note)
        self.executor = await ensure_pool(self.run, self.spec)
        self._deaths: deque[float] = deque()
        self._avg_item_s = 0.0

    def notes(self) -> list[str]:
        return list(getattr(self, "_notes", []))

    def restarts(self) -> int:
        return len(getattr(self, "_deaths", ()))

    def start(self) -> None:
        self._reorder = AsyncReorderer(self.spec.reorder_window) if self.spec.ordered else None
        feeders = len(self.workers) * FEEDERS_PER_WORKER
        self._alive = feeders
        self.tasks = [
            self.run.loop.create_task(self._work(i), name=f"conveyor-{self.name}-feed-{i}")
            for i in range(feeders)
        ]

    async def _work(self, index: int) -> None:
        ws = self.workers[index % len(self.workers)]
        ok = False
        try:
            await self._feed(ws)
            ok = True
        except asyncio.CancelledError:
            pass
        except BaseException as exc:
            self.fail(exc)
        finally:
            await self._exited(ok, ws)

    def _limit(self) -> int:
        assert self.inbox is not None
        fair = math.ceil(len(self.inbox) / len(self.tasks))
        timed = int(CHUNK_TARGET_S / self._avg_item_s) if self._avg_item_s else 1
        return max(1, min(self.spec.chunk_size, fair, timed))

    async def _feed(self, ws: WorkerStats) -> None:
        assert self.inbox is not None
        inbox, reorder = self.inbox, self._reorder
        from .channel import EndOfStream

        while True:
            try:
                if reorder is not None:
                    seq, chunk = await reorder.take(lambda: inbox.aget_many(self._limit()))
                else:
                    seq, chunk = 0, await inbox.aget_many(self._limit())
            except EndOfStream:
                return
            ws.items_in += len(chunk)
            ws.current += len(chunk)
            pairs = await self._run_chunk(chunk, ws)
            ws.current -= len(chunk)
            if reorder is not None:
                await reorder.complete(seq, pairs, lambda p: self.outputs.asend(p, ws))
            else:
                await self.outputs.asend(pairs, ws)

    async def _run_chunk(self, chunk: list[Any], ws: WorkerStats) -> Pairs:
        timeout = self.spec.timeout * len(chunk) if self.spec.timeout else None
        outcome = await self._submit([chunk], timeout)
        if outcome.ok:
            return await self._results(chunk, outcome.value, ws)
        error = outcome.error or WorkerLost(outcome.message)
        if isinstance(error, WorkerLost):
            self._worker_died(error)
        if isinstance(error, SerializationError) and len(chunk) > 1:
            return await self._without_unencodable(chunk, ws)
        if len(chunk) > 1:  # find the item to blame: one task each
            pairs: Pairs = []
            for item in chunk:
                pairs.extend(await self._run_chunk([item], ws))
            return pairs
        if isinstance(error, SerializationError):
            error = unencodable(self.name, chunk).get(0, error)
        return await self._failed_item(chunk[0], error, ws)

    async def _without_unencodable(self, chunk: list[Any], ws: WorkerStats) -> Pairs:
        bad = unencodable(self.name, chunk)
        pairs: Pairs = []
        for i, error in bad.items():
            pairs.extend(await self._failed_item(chunk[i], error, ws))
        rest = [item for i, item in enumerate(chunk) if i not in bad]
        if rest:
            pairs.extend(await self._run_chunk(rest, ws))
        return pairs

    async def _results(self, chunk: list[Any], results: list[Any], ws: WorkerStats) -> Pairs:
        pairs: Pairs = []
        total = 0.0
        for item, entry in zip(chunk, results, strict=True):
            took = entry[3] / NANOS
            total += took
            ws.latency.record(took)
            if entry[0] == 0:
                pairs.extend((None, out) for out in entry[1])
                if entry[2]:
                    pairs.extend((target, out) for target, out in entry[2])
            else:
                error = StageItemError(entry[1], entry[2])
                pairs.extend(await self._failed_item(item, error, ws))
        ws.busy_s += total
        if chunk:
            per_item = total / len(chunk)
            self._avg_item_s = (
                per_item if not self._avg_item_s else (0.8 * self._avg_item_s + 0.2 * per_item)
            )
        return pairs

    async def _failed_item(self, item: Any, error: BaseException, ws: WorkerStats) -> Pairs:
        attempt = 1
        while True:
            action, delay = self.decide(attempt, ws)
            if action is Action.RETRY:
                if delay:
                    await asyncio.sleep(delay)
                outcome = await self._submit([[item]], self.spec.timeout)
                if outcome.ok and outcome.value[0][0] == 0:
                    entry = outcome.value[0]
                    return [(None, x) for x in entry[1]] + [(t, x) for t, x in entry[2] or ()]
                if outcome.ok:
                    error = StageItemError(outcome.value[0][1], outcome.value[0][2])
                else:
                    error = outcome.error or WorkerLost(outcome.message)
                    if isinstance(error, WorkerLost):
                        self._worker_died(error)
                attempt += 1
                continue
            if action is Action.DEAD_LETTER:
                await self.asend_dead_letter(item, error, attempt)
            elif action is Action.RAISE:
                raise error
            return []

    async def _submit(self, args: list[Any], timeout: float | None) -> Outcome:
        try:
            outcome = await self.executor.run(Task(self.name, args, timeout=timeout))
        except ConnectionError as exc:
            # the executor should report this as WorkerLost; a worker that died just before
            # its task was written surfaces as a reset pipe instead (reported upstream)
            outcome = Outcome.failure(WorkerLost(f"lost the connection to a worker: {exc}"))
        if self.run.failed:  # the pool was stopped under us: leave, do not count deaths
            raise ChannelClosed("the run was cancelled")
        return outcome

    def _worker_died(self, error: BaseException) -> None:
        """Count a dead worker; too many deaths in the window fail the stage."""
        now = time.monotonic()
        self._deaths.append(now)
        window = self.spec.restart_window_s
        recent = sum(1 for t in self._deaths if now - t <= window)
        self._notes.append(f"worker lost: {error}")
        del self._notes[:-5]
        log.warning("stage %r: %s", self.name, error)
        if recent > self.spec.max_restarts:
            raise WorkerLost(
                f"stage {self.name!r}: {recent} worker processes died within {window:g}s "
                f"(max_restarts={self.spec.max_restarts}); the last: {error}"
            )


async def ensure_pool(run: Any, spec: Any) -> Executor:
    """The executor for this stage's pool, made and started on first use.

    Every stage of the same context registers its chunk runner before the executor starts,
    since worker processes only know the functions they inherited when forked.
    """
    key = spec.strategy.context or spec.name
    if key in run.executors:
        return run.executors[key]
    group = [s for s in run.graph.stages.values() if (s.strategy.context or s.name) == key]
    if not run.fork_hooks_done:
        run.fork_hooks_done = True
        for hook in run.hooks.before_fork:
            hook()
    runners: dict[str, ChunkRunner] = {}
    for s in group:
        for hook in s.before_fork:
            hook()
        after = [*run.hooks.after_fork, *s.after_fork]
        runners[s.name] = ChunkRunner(s.name, s.stage.sync_call(), s.init, after)
    kind = EXECUTOR_KINDS[spec.strategy.kind]
    size = spec.strategy.size
    options: dict[str, Any] = {}
    if kind == "fork":

        def prepare_all() -> None:  # runs in the fork zygote: children share the state
            for runner in runners.values():
                runner.prepare()

        options["init"] = prepare_all
    executor = create_executor(kind, runners, size, **options)
    run.executors[key] = executor
    await executor.start()
    return executor
