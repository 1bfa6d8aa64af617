"""The deterministic run: every stage in the caller's thread, for users' own tests.

``pipe.run(deterministic=True)`` (or ``configure(deterministic=True)`` once for a test suite)
runs the same graph with no threads, no processes and no event loop of its own beyond one for
async stages: each item a producer emits goes depth-first through the stages it reaches before
the producer continues; producers run one after another in declaration order; ``finish`` runs
in topological order at the end. So outputs always come in the same order.

What differs from a real run, on purpose: batches flush only on size and at the end (no
``max_wait`` timer), retry backoff is not waited, process and fork stages run here but their
items still make the JSON round trip (so a test catches an item that would not cross), and
``before_fork``/``after_fork`` each run once in the caller.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..errors import PipelineError, StageFailed
from .emit import BufferEmitter, Outputs, OutputSink, Target
from .graph import Graph
from .policy import Action, dead_letter_record
from .run import Hooks, RunResult
from .spec import StageSpec
from .stats import PipelineStats, WorkerStats, pick_bottleneck, summarise
from .wire import OUT_OF_PROCESS_KINDS, round_trip


class _Direct:
    """A target that runs the receiving stage on the item right away."""

    def __init__(self, node: _Node) -> None:
        self.node = node
        self.name = node.spec.name

    def put(self, item: Any) -> float:
        self.node.deliver(item)
        return 0.0

    async def aput(self, item: Any) -> float:
        return self.put(item)

    def close(self) -> None:
        pass


class _Node:
    def __init__(self, spec: StageSpec, loop: asyncio.AbstractEventLoop) -> None:
        self.spec = spec
        self.ws = WorkerStats()
        self.loop = loop
        self.crosses = spec.strategy.kind in OUT_OF_PROCESS_KINDS
        self.state: Any = None
        self.outputs: Outputs
        self.dead: Any = None
        if spec.stage.is_async:
            self._acall = spec.stage.async_call()
        else:
            self._call = spec.stage.sync_call()

    def emitter(self) -> Any:
        return self.outputs.emitter(self.ws)

    def invoke(self, item: Any) -> None:
        if self.crosses:
            item = round_trip(self.spec.name, item)
        if not self.spec.stage.is_async and not self.crosses:
            self._call(item, self.emitter(), self.state)
            return
        buffer = BufferEmitter()
        if self.spec.stage.is_async:
            direct = self.emitter() if self.spec.kind == "producer" else None
            emit = _AsyncBuffer(buffer, direct)
            self.loop.run_until_complete(self._acall(item, emit, self.state))
        else:
            self._call(item, buffer, self.state)
        if self.crosses:
            buffer.items = [(t, round_trip(self.spec.name, x, "outputs")) for t, x in buffer.items]
        self.outputs.send(buffer.items, self.ws)

    def deliver(self, item: Any) -> None:
        ws = self.ws
        ws.items_in += 1
        started = time.perf_counter()
        attempt = 1
        while True:
            try:
                self.invoke(item)
                break
            except Exception as exc:
                action, _ = self.spec.policy.decide(attempt, self.dead is not None)
                if action is Action.RETRY:
                    ws.retried += 1
                    attempt += 1
                    continue
                ws.failed += 1
                if action is Action.RAISE:
                    raise StageFailed(self.spec.name, exc) from exc
                if action is Action.SKIP:
                    ws.skipped += 1
                else:
                    ws.dead_lettered += 1
                    self._dead_letter(item, exc, attempt)
                break
        took = time.perf_counter() - started
        ws.busy_s += took
        ws.latency.record(took)

    def _dead_letter(self, item: Any, exc: Exception, attempts: int) -> None:
        if isinstance(self.dead, _Direct):
            self.dead.put(dead_letter_record(self.spec.name, item, exc, attempts))
        else:
            self.dead(item, exc)


class _AsyncBuffer(BufferEmitter):
    """Async stages' emit here: ``emit(x)`` and ``await emit(x)`` both just buffer."""

    __slots__ = ("_direct", "_inner")

    def __init__(self, inner: BufferEmitter, direct: Any = None) -> None:
        super().__init__()
        self._inner = inner
        self._direct = direct

    async def send(self, item: Any) -> None:
        """An async producer's item: straight on, depth-first, when there is a direct emit."""
        if self._direct is not None:
            self._direct(item)
        else:
            self._inner(item)

    def __call__(self, item: Any) -> Any:
        self._inner(item)
        return _done()

    def to(self, name: str, item: Any) -> Any:
        self._inner.to(name, item)
        return _done()


async def _done() -> None:
    return None


def run_deterministic(graph: Graph, hooks: Hooks, collect: bool) -> RunResult:
    started = time.perf_counter()
    sink = OutputSink(collect)
    loop = asyncio.new_event_loop()
    nodes = {name: _Node(spec, loop) for name, spec in graph.stages.items()}
    for name, node in nodes.items():
        named: dict[str, Target] = {
            e.dst: _Direct(nodes[e.dst]) for e in graph.outputs(name) if not e.dead_letter
        }
        if graph.is_terminal(name):
            named[sink.name] = sink
        node.outputs = Outputs(name, named, node.spec.fanout)
        dead: Any = node.spec.dead_letter
        if isinstance(dead, str):
            dead = _Direct(nodes[next(e.dst for e in graph.outputs(name) if e.dead_letter)])
        node.dead = dead
    try:
        _execute(graph, hooks, nodes)
    finally:
        loop.close()
        for hook in hooks.after_run:
            hook()
    return RunResult(_stats(graph, nodes, sink, time.perf_counter() - started), sink.items)


def _execute(graph: Graph, hooks: Hooks, nodes: dict[str, _Node]) -> None:
    for hook in hooks.before_run:
        hook()
    order = [nodes[n] for n in graph.order]
    forked = [n for n in order if n.crosses]
    for hook in [*hooks.before_fork, *(h for n in forked for h in n.spec.before_fork)]:
        hook()
    for hook in [*hooks.after_fork, *(h for n in forked for h in n.spec.after_fork)]:
        hook()
    for node in order:
        _guard(node, node.spec.before)
        _guard(node, [node.spec.stage.start])
        if node.spec.init is not None:
            node.state = _guard(node, [node.spec.init])
    for node in order:
        if node.spec.kind == "producer":
            _guard(node, [lambda node=node: node.invoke(None)])
    for node in order:
        _guard(node, [lambda node=node: node.spec.stage.finish(node.emitter())])
        _guard(node, node.spec.after)


def _guard(node: _Node, calls: list[Any]) -> Any:
    result = None
    for call in calls:
        try:
            result = call()
            if asyncio.iscoroutine(result):
                result = node.loop.run_until_complete(result)
        except (StageFailed, PipelineError):
            raise
        except Exception as exc:
            raise StageFailed(node.spec.name, exc) from exc
    return result


def _stats(
    graph: Graph, nodes: dict[str, _Node], sink: OutputSink, elapsed: float
) -> PipelineStats:
    stages = []
    for name in graph.order:
        spec = nodes[name].spec
        s = summarise(name, spec.kind, "deterministic", [nodes[name].ws], elapsed)
        s.done = True
        stages.append(s)
    bottleneck = pick_bottleneck(stages)
    for s in stages:
        s.bottleneck = s.name == bottleneck
    return PipelineStats(
        name=graph.name,
        state="done",
        elapsed_s=round(elapsed, 6),
        stages=stages,
        edges=[(e.src, e.dst) for e in graph.edges],
        bottleneck=bottleneck,
        outputs=sink.count,
    )
