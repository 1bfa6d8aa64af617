"""``emit``: how stage code sends items on, and where they go.

:class:`Outputs` knows a stage's downstream channels, its fan-out policy (``broadcast``: every
downstream gets every item, the same object; ``round_robin``: one downstream each, in turn) and,
for a terminal stage, the run's output sink. ``emit.to("name", item)`` sends to one named
downstream, which must be one of the stage's outputs (declared with ``to=`` or by the default
wiring): that is how the engine knows, before the run, which stages to wait for at the end.

:class:`Emitter` is the thread-side ``emit``: it puts straight into the channels (blocking when
they are full) and counts items out and time blocked. :class:`BufferEmitter` only collects, for
stages whose outputs are sent later (ordered stages, coroutines, process pools).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..errors import PipelineError
from .stats import WorkerStats


class Target(Protocol):
    name: str

    def put(self, item: Any) -> float: ...
    async def aput(self, item: Any) -> float: ...
    def close(self) -> None: ...


class OutputSink:
    """Where the items of terminal processors go: counted, and kept when ``collect=True``."""

    name = "<output>"

    def __init__(self, collect: bool) -> None:
        self.items: list[Any] = []
        self.count = 0
        self._keep = collect

    def put(self, item: Any) -> float:
        self.count += 1
        if self._keep:
            self.items.append(item)
        return 0.0

    async def aput(self, item: Any) -> float:
        return self.put(item)

    def close(self) -> None:
        pass


class Outputs:
    """A stage's downstream targets and how items are spread over them."""

    def __init__(self, stage: str, named: dict[str, Target], fanout: str) -> None:
        self.stage = stage
        self.named = named
        self.default: Sequence[Target] = list(named.values())
        self.fanout = fanout
        self._turn = itertools.count()

    def target(self, name: str) -> Target:
        try:
            return self.named[name]
        except KeyError:
            known = ", ".join(n for n in self.named if not n.startswith("<")) or "(none)"
            raise PipelineError(
                f"stage {self.stage!r} emitted to {name!r}, which is not one of its outputs "
                f"({known}); name it in the stage's to= so the run knows to wait for it"
            ) from None

    def pick(self, name: str | None) -> Sequence[Target]:
        """The targets of one item (for the buffered and async paths)."""
        if name is not None:
            return (self.target(name),)
        if not self.default:
            raise PipelineError(f"consumer {self.stage!r} cannot emit: it has no outputs")
        if self.fanout == "round_robin" and len(self.default) > 1:
            return (self.default[next(self._turn) % len(self.default)],)
        return self.default

    def send(self, pairs: list[tuple[str | None, Any]], stats: WorkerStats) -> None:
        """Put buffered (target, item) pairs, blocking while full."""
        for name, item in pairs:
            for target in self.pick(name):
                stats.blocked_s += target.put(item)
            stats.items_out += 1

    async def asend(self, pairs: list[tuple[str | None, Any]], stats: WorkerStats) -> None:
        for name, item in pairs:
            for target in self.pick(name):
                stats.blocked_s += await target.aput(item)
            stats.items_out += 1

    def close(self) -> None:
        for target in {id(t): t for t in self.named.values()}.values():
            target.close()

    def emitter(self, stats: WorkerStats) -> Emitter:
        return Emitter(self, stats)


class Emitter:
    """The ``emit`` of thread stages: sends each item at once, blocking while downstream is full."""

    __slots__ = ("_outputs", "_put", "_stats")

    def __init__(self, outputs: Outputs, stats: WorkerStats) -> None:
        self._outputs = outputs
        self._stats = stats
        self._put = _fast_put(outputs)

    def __call__(self, item: Any) -> None:
        self._stats.items_out += 1
        waited = self._put(item)
        if waited:
            self._stats.blocked_s += waited

    def to(self, name: str, item: Any) -> None:
        self._stats.items_out += 1
        waited = self._outputs.target(name).put(item)
        if waited:
            self._stats.blocked_s += waited


def _fast_put(outputs: Outputs) -> Callable[[Any], float]:
    targets = list(outputs.default)
    if not targets:

        def nowhere(item: Any) -> float:
            outputs.pick(None)
            return 0.0

        return nowhere
    if len(targets) == 1:
        return targets[0].put
    if outputs.fanout == "round_robin":
        turn = itertools.cycle(targets)
        return lambda item: next(turn).put(item)
    return lambda item: sum(t.put(item) for t in targets)


class BufferEmitter:
    """An ``emit`` that collects (target, item) pairs to be sent later."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[tuple[str | None, Any]] = []

    def __call__(self, item: Any) -> None:
        self.items.append((None, item))

    def to(self, name: str, item: Any) -> None:
        self.items.append((name, item))


class AsyncEmitter(BufferEmitter):
    """The ``emit`` of asyncio stages: ``emit(x)`` buffers until the call returns;
    ``await emit(x)`` sends at once, waiting while downstream is full (backpressure)."""

    __slots__ = ("_outputs", "_stats")

    def __init__(self, outputs: Outputs, stats: WorkerStats) -> None:
        super().__init__()
        self._outputs = outputs
        self._stats = stats

    def __call__(self, item: Any) -> _Flush:  # type: ignore[override]
        self.items.append((None, item))
        return _Flush(self)

    def to(self, name: str, item: Any) -> _Flush:  # type: ignore[override]
        self.items.append((name, item))
        return _Flush(self)

    async def send(self, item: Any) -> None:
        self.items.append((None, item))
        await self.flush()

    async def flush(self) -> None:
        pairs, self.items = self.items, []
        if pairs:
            await self._outputs.asend(pairs, self._stats)


class _Flush:
    """What ``emit(x)`` returns in an asyncio stage: awaiting it sends the buffered items now."""

    __slots__ = ("_emitter",)

    def __init__(self, emitter: AsyncEmitter) -> None:
        self._emitter = emitter

    def __await__(self) -> Any:
        return self._emitter.flush().__await__()
