"""The ``Pipeline`` DSL: declare stages with decorators, then ``run()``.

::

    pipe = Pipeline("etl")

    @pipe.producer
    def numbers():
        yield from range(1000)

    @pipe.processor(threads=4)
    def square(n):
        return n * n

    @pipe.consumer
    def show(n):
        print(n)

    result = pipe.run()            # RunResult: .stats (PipelineStats), .outputs

Stages chain in declaration order; ``to=`` / ``from_=`` / ``fanout=`` shape a DAG (see
``graph.py`` for the rules). Every option a stage takes is in ``spec.STAGE_OPTIONS``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ..errors import PipelineDefinitionError, PipelineError
from .config import Strategy, defaults, parse_strategy
from .graph import Graph, NestedNode, build_graph
from .run import Hooks, Run, RunResult
from .spec import StageSpec, make_spec
from .stage import Batch, FunctionStage, IterableSource, ProducerStage, Stage, Unbatch

F = TypeVar("F", bound=Callable[..., Any])


class Pipeline:
    """A graph of stages connected by bounded channels."""

    def __init__(self, name: str = "pipeline") -> None:
        self.name = name
        self._nodes: list[StageSpec | NestedNode] = []
        self._contexts: dict[str, Strategy] = {}
        self.hooks = Hooks()
        self._counter = itertools.count(2)
        self.current: Run | None = None  # the run in progress, for the HUD and tests

    # --- stages ---------------------------------------------------------------------------
    def producer(self, fn: Any = None, /, **options: Any) -> Any:
        """Declare a source: a generator (or async generator), a function returning an
        iterable, or one taking ``emit``. Usable bare or with options."""
        return self._decorate("producer", fn, options)

    def processor(self, fn: Any = None, /, **options: Any) -> Any:
        """Declare a stage that takes an item and sends zero or more on."""
        return self._decorate("processor", fn, options)

    def consumer(self, fn: Any = None, /, **options: Any) -> Any:
        """Declare a stage that takes items and sends nothing on."""
        return self._decorate("consumer", fn, options)

    def _decorate(self, kind: str, fn: Any, options: dict[str, Any]) -> Any:
        if isinstance(fn, str):  # @pipe.processor("name", ...)
            options["name"] = fn
            fn = None

        def register(f: F) -> F:
            name = options.pop("name", None)
            stage: Stage = (
                ProducerStage(f, name) if kind == "producer" else FunctionStage(f, kind, name)
            )
            self._add_spec(stage, options)
            return f

        return register(fn) if fn is not None else register

    def batch(
        self, size: int, max_wait: float | None = None, *, name: str | None = None, **options: Any
    ) -> Batch:
        """Add a stage that groups items into lists of ``size`` (sooner after ``max_wait`` s)."""
        stage = Batch(size, max_wait, name or self._auto_name("batch"))
        self._add_spec(stage, options)
        return stage

    def unbatch(self, *, name: str | None = None, **options: Any) -> Unbatch:
        """Add a stage that sends on each element of every list it receives."""
        stage = Unbatch(name or self._auto_name("unbatch"))
        self._add_spec(stage, options)
        return stage

    def add(self, part: Stage | Pipeline, *, name: str | None = None, **options: Any) -> Any:
        """Add a custom :class:`Stage` instance, or another pipeline as a nested stage
        (``to=``/``from_=`` only)."""
        if isinstance(part, Pipeline):
            extra = sorted(set(options) - {"to", "from_"})
            if extra:
                raise PipelineDefinitionError(
                    f"nested pipeline {part.name!r} takes only to= and from_=, not {extra}"
                )
            for ctx, strategy in part._contexts.items():
                self._add_context(ctx, strategy)
            node = NestedNode(
                name or part.name,
                list(part._nodes),
                _names(options.get("to")),
                _names(options.get("from_")),
            )
            self._check_new_name(node.name)
            self._nodes.append(node)
            return part
        if not isinstance(part, Stage):
            raise PipelineDefinitionError(f"add() takes a Stage or a Pipeline, not {part!r}")
        if name:
            part.name = name
        self._add_spec(part, options)
        return part

    def _add_spec(self, stage: Stage, options: dict[str, Any]) -> StageSpec:
        spec = make_spec(stage, options)
        self._check_new_name(spec.name)
        self._nodes.append(spec)
        return spec

    def _check_new_name(self, name: str) -> None:
        if any(n.name == name for n in self._nodes):
            raise PipelineDefinitionError(
                f"duplicate stage name {name!r} in pipeline {self.name!r}; give one another name="
            )

    def _auto_name(self, base: str) -> str:
        if not any(n.name == base for n in self._nodes):
            return base
        while True:
            candidate = f"{base}_{next(self._counter)}"
            if not any(n.name == candidate for n in self._nodes):
                return candidate

    # --- execution contexts and hooks -----------------------------------------------------
    def context(self, name: str, **strategy: Any) -> None:
        """Declare a named execution context (``threads=8``, ``processes=4``...) that stages
        join with ``context=name``; its stages share one pool of that size."""
        parsed = parse_strategy(f"context {name}", dict(strategy))
        if parsed.kind in ("inline", "distributed"):
            raise PipelineDefinitionError(
                f"context {name!r} needs threads, asyncio, processes, forks or interpreters"
            )
        self._add_context(name, parsed)

    def _add_context(self, name: str, strategy: Strategy) -> None:
        if self._contexts.get(name, strategy) != strategy:
            raise PipelineDefinitionError(f"execution context {name!r} is declared twice")
        self._contexts[name] = strategy

    def before_run(self, fn: F) -> F:
        """Run ``fn()`` once before any stage starts."""
        self.hooks.before_run.append(fn)
        return fn

    def after_run(self, fn: F) -> F:
        """Run ``fn()`` once after the run ends, whether it succeeded or failed."""
        self.hooks.after_run.append(fn)
        return fn

    def before_fork(self, fn: F) -> F:
        """Run ``fn()`` once in this process before the first process/fork pool is made."""
        self.hooks.before_fork.append(fn)
        return fn

    def after_fork(self, fn: F) -> F:
        """Run ``fn()`` once in every worker process of every process or fork stage."""
        self.hooks.after_fork.append(fn)
        return fn

    def before(self, stage: str) -> Callable[[F], F]:
        """Run the decorated function once before ``stage`` gets its first item."""
        return lambda fn: self._stage_hook(stage, "before", fn)

    def after(self, stage: str) -> Callable[[F], F]:
        """Run the decorated function once after ``stage`` finished, before the stages below
        it see the end of the stream."""
        return lambda fn: self._stage_hook(stage, "after", fn)

    def _stage_hook(self, stage: str, when: str, fn: F) -> F:
        for node in self._nodes:
            if node.name == stage and isinstance(node, StageSpec):
                getattr(node, when).append(fn)
                return fn
        known = ", ".join(n.name for n in self._nodes) or "(none yet)"
        raise PipelineDefinitionError(
            f"cannot hook {when} unknown stage {stage!r}; declare the stage first. Stages: {known}"
        )

    # --- building and running ---------------------------------------------------------------
    def build(self, source: Iterable[Any] | None = None) -> Graph:
        """Check the graph and return it; raises PipelineDefinitionError with what is wrong."""
        nodes = list(self._nodes)
        if source is not None:
            if any(n.name == "source" for n in nodes):
                raise PipelineDefinitionError(
                    "run(source=...) adds a producer named 'source', but a stage has that name"
                )
            nodes.insert(0, make_spec(IterableSource(source), {}))
        if not nodes:
            raise PipelineDefinitionError(f"pipeline {self.name!r} has no stages")
        return build_graph(self.name, nodes, dict(self._contexts))

    def run(
        self,
        source: Iterable[Any] | None = None,
        *,
        hud: bool = False,
        collect: bool = False,
        deterministic: bool | None = None,
    ) -> RunResult:
        """Run to the end and return the stats (and, with ``collect=True``, the outputs of the
        terminal processors). Raises ``StageFailed`` for the first error of a stage whose
        policy is ``raise``. ``source=`` feeds an iterable in as a producer named ``source``.
        ``deterministic=True`` runs every stage in this thread (see ``inline.py``)."""
        graph = self.build(source)
        if defaults().deterministic if deterministic is None else deterministic:
            from .inline import run_deterministic

            return run_deterministic(graph, self.hooks, collect)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise PipelineError("run() was called inside a running event loop; use run_async()")
        if hud:
            from .hud import run_with_hud

            return run_with_hud(self, graph, collect)
        return asyncio.run(self._execute(graph, collect, None))

    async def run_async(
        self, source: Iterable[Any] | None = None, *, collect: bool = False
    ) -> RunResult:
        """``run()`` for async code: runs on the current event loop."""
        return await self._execute(self.build(source), collect, None)

    async def _execute(
        self, graph: Graph, collect: bool, on_started: Callable[[Run], Any] | None
    ) -> RunResult:
        run = Run(graph, self.hooks, defaults(), collect)
        self.current = run
        return await run.execute(on_started)


def _names(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)
