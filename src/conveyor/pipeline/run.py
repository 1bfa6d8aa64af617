"""One run of a pipeline: channels, drivers, the start order, failure and shutdown.

Start order, and why:

1. ``before_run`` hooks.
2. ``prepare`` every driver: process and fork pools make their zygote now, while the parent has
   no pipeline threads yet (forking a threaded parent is unsafe, and warns since 3.12).
3. For each stage from the last to the first: its ``before`` hooks, ``stage.start()``, then its
   workers. Consumers are ready before producers send anything.
4. Wait until every stage is done, or until the first failure.

Failure (policy ``raise``, a producer error, a hook error, Ctrl-C, ``q`` in the HUD): the first
one is recorded, every channel and reorder buffer is aborted at once from the failing thread
(so blocked senders and receivers wake and leave), coroutines are cancelled and process pools
are stopped with no grace; ``run()`` then raises ``StageFailed`` naming the stage. The
``after_run`` hooks run once in either case.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import PipelineError, StageFailed
from .aio import AsyncDriver
from .channel import Channel
from .config import Defaults
from .driver import Driver
from .emit import Outputs, OutputSink, Target
from .graph import Graph
from .spec import StageSpec
from .stats import PipelineStats, StageStats, pick_bottleneck, summarise
from .threads import ThreadDriver

TRANSPORT_CLOSE_TURNS = 3
RUN = "<run>"  # the "stage" of failures that belong to the whole run (cancel, Ctrl-C)


@dataclass
class Hooks:
    """Pipeline-wide hooks."""

    before_run: list[Callable[[], Any]] = field(default_factory=list)
    after_run: list[Callable[[], Any]] = field(default_factory=list)
    before_fork: list[Callable[[], Any]] = field(default_factory=list)
    after_fork: list[Callable[[], Any]] = field(default_factory=list)


@dataclass
class RunResult:
    """What ``run()`` returns: the stats, and the terminal outputs when ``collect=True``."""

    stats: PipelineStats
    outputs: list[Any] = field(default_factory=list)

    def to_json(self, *, indent: bool = False) -> str:
        return self.stats.to_json(indent=indent)


class Run:
    """The live state of one run."""

    def __init__(self, graph: Graph, hooks: Hooks, defaults: Defaults, collect: bool) -> None:
        self.graph = graph
        self.hooks = hooks
        self.defaults = defaults
        self.sink = OutputSink(collect)
        self.failed = False
        self.error: tuple[str, BaseException] | None = None
        self.state = "starting"
        self.pausable = True
        self.started = time.perf_counter()
        self.ended: float | None = None
        self.channels: dict[str, Channel] = {}
        self.drivers: dict[str, Driver] = {}
        self.executors: dict[str, Any] = {}
        self.fork_hooks_done = False
        self._stopped: set[str] = set()
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._resumed = threading.Event()
        self._resumed.set()
        self._gates: dict[str, Any] = {}

    # --- the run ------------------------------------------------------------------------------
    async def execute(self, on_started: Callable[[Run], Any] | None = None) -> RunResult:
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._failure = asyncio.Event()
        self._build()
        try:
            for hook in self.hooks.before_run:
                hook()
            for name in self.graph.order:
                await self.drivers[name].prepare()
            self.state = "running"
            if on_started is not None:
                on_started(self)
            self._start_stages()
            await self._wait()
        except BaseException as exc:
            self.cancel(f"the run was interrupted ({type(exc).__name__})")
            raise
        finally:
            await self._shutdown()
            self.ended = time.perf_counter()
            self.state = "failed" if self.failed else "done"
            for hook in self.hooks.after_run:
                hook()
        if self.error is not None:
            stage, error = self.error
            if stage == RUN:
                raise error
            raise StageFailed(stage, error) from error
        return RunResult(self.snapshot(), self.sink.items)

    def _build(self) -> None:
        from .pool import make_pool_driver  # process pools are optional machinery

        g = self.graph
        for name, spec in g.stages.items():
            if spec.kind != "producer":
                size = spec.queue_size or self.defaults.queue_size
                self.channels[name] = Channel(name, size, g.senders(name))
                self.channels[name].bind(self.loop)
        for name, spec in g.stages.items():
            named: dict[str, Target] = {
                e.dst: self.channels[e.dst] for e in g.outputs(name) if not e.dead_letter
            }
            if g.is_terminal(name):
                named[self.sink.name] = self.sink
            outputs = Outputs(name, named, spec.fanout)
            dead: Any = spec.dead_letter
            if isinstance(dead, str):
                dead = self.channels[next(e.dst for e in g.outputs(name) if e.dead_letter)]
            inbox = self.channels.get(name)
            kind = spec.strategy.kind
            cls: Any = ThreadDriver
            if kind == "asyncio":
                cls = AsyncDriver
            elif kind not in ("inline", "threads"):
                cls = make_pool_driver(kind)
            self.drivers[name] = cls(self, spec, inbox, outputs, dead)

    def _start_stages(self) -> None:
        for name in reversed(self.graph.order):
            spec = self.graph.stages[name]
            try:
                for hook in spec.before:
                    hook()
                spec.stage.start()
                self.drivers[name].start()
            except BaseException as exc:
                self.fail(name, exc)
                for driver in self.drivers.values():  # stages never started are done
                    if not driver.started:
                        driver.mark_done()
                return
            self.drivers[name].started = True

    async def _wait(self) -> None:
        pending = {d.done for d in self.drivers.values()}
        failure = asyncio.ensure_future(self._failure.wait())
        try:
            # Wait on the stages not yet done only: a done future in the set would make every
            # wait return at once, and the loop would spin (it took half a core while process
            # workers computed, see test_waiting_parent_stays_idle).
            remaining = set(pending)
            while not self.failed and remaining:
                await asyncio.wait(remaining | {failure}, return_when=asyncio.FIRST_COMPLETED)
                remaining = {f for f in remaining if not f.done()}
            if self.failed:
                # Pools first: a stopped executor fails its in-flight tasks and replaces no
                # worker, so cancelling its callers afterwards cannot race a respawn.
                await self._stop_executors(0.0)
                self._cancel_tasks(pools=True)
                # give stages a moment to leave; stuck user code is abandoned
                await asyncio.wait(pending, timeout=self.defaults.shutdown_grace_s)
        finally:
            failure.cancel()

    async def _shutdown(self) -> None:
        grace = 0.0 if self.failed else self.defaults.shutdown_grace_s
        for driver in self.drivers.values():
            try:
                await driver.stop(grace)
            except Exception as exc:  # a pool that fails to stop must not hide the real error
                self.fail(driver.name, exc)
        await self._stop_executors(grace)
        for _ in range(TRANSPORT_CLOSE_TURNS):  # let closed sockets finish closing on this loop
            await asyncio.sleep(0)

    # --- failure, cancellation, pause ---------------------------------------------------------
    def fail(self, stage: str, error: BaseException) -> None:
        """Record the first failure and cancel everything; callable from any thread."""
        with self._lock:
            if self.failed:
                return
            self.failed = True
            self.error = (stage, error)
        self._abort()

    def cancel(self, reason: str) -> None:
        self.fail(RUN, PipelineError(reason))

    def _abort(self) -> None:
        self._cancelled.set()
        self._resumed.set()
        for channel in self.channels.values():
            channel.abort()
        for driver in self.drivers.values():
            driver.abort()
        self.call_in_loop(self._on_failure)

    async def _stop_executors(self, grace: float) -> None:
        for key, executor in list(self.executors.items()):
            if key not in self._stopped:
                self._stopped.add(key)
                await executor.stop(grace)

    def _on_failure(self) -> None:
        self._failure.set()
        self._cancel_tasks(pools=False)

    def _cancel_tasks(self, pools: bool) -> None:
        for driver in self.drivers.values():
            if driver.uses_pool == pools:
                for task in getattr(driver, "tasks", ()):
                    task.cancel()

    def call_in_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        elif not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)

    def sleep(self, seconds: float) -> bool:
        """Sleep in a worker thread; True if the run was cancelled meanwhile."""
        return self._cancelled.wait(seconds)

    @property
    def paused(self) -> bool:
        return not self._resumed.is_set()

    def pause(self) -> None:
        """Stop producers from sending; the stages drain what is queued."""
        if not self.failed:
            self._resumed.clear()

    def resume(self) -> None:
        self._resumed.set()

    def wait_resumed(self) -> None:
        self._resumed.wait()

    # --- execution contexts -------------------------------------------------------------------
    def context_gate(self, spec: StageSpec) -> threading.Semaphore | None:
        """The shared permit pool of an in-process thread context."""
        ctx = spec.strategy.context
        if ctx is None:
            return None
        return self._gates.setdefault(ctx, threading.Semaphore(spec.strategy.size))

    def context_gate_async(self, spec: StageSpec) -> asyncio.Semaphore | None:
        ctx = spec.strategy.context
        if ctx is None:
            return None
        return self._gates.setdefault(ctx, asyncio.Semaphore(spec.strategy.size))

    # --- stats -------------------------------------------------------------------------------
    def snapshot(self) -> PipelineStats:
        end = self.ended or time.perf_counter()
        elapsed = end - self.started
        stages: list[StageStats] = []
        for name in self.graph.order:
            driver = self.drivers.get(name)
            if driver is None:
                continue
            spec = driver.spec
            s = summarise(name, spec.kind, spec.strategy.label, driver.workers, elapsed)
            s.in_flight = driver.in_flight()
            s.restarts = driver.restarts()
            s.done = driver.finished
            s.notes = driver.notes()
            channel = self.channels.get(name)
            if channel is not None:
                s.queue_depth, s.queue_peak = len(channel), channel.peak
                s.queue_capacity = channel.capacity
            stages.append(s)
        bottleneck = pick_bottleneck(stages)
        for s in stages:
            s.bottleneck = s.name == bottleneck
        error = None
        if self.error is not None:
            error = f"{self.error[0]}: {type(self.error[1]).__name__}: {self.error[1]}"
        state = "paused" if self.paused and self.state == "running" else self.state
        return PipelineStats(
            name=self.graph.name,
            state=state,
            elapsed_s=round(elapsed, 6),
            stages=stages,
            edges=[(e.src, e.dst) for e in self.graph.edges],
            bottleneck=bottleneck,
            error=error,
            outputs=self.sink.count,
        )
