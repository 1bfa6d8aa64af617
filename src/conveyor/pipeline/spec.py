"""A stage together with its options, checked when it is declared.

Every option a stage accepts is listed in :data:`STAGE_OPTIONS`; an unknown keyword is an error
at declaration (Minigun documents options its code never reads; here an option either works or
is refused).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import PipelineDefinitionError
from .config import OUT_OF_PROCESS, STRATEGIES, Strategy, defaults, parse_strategy
from .policy import ErrorPolicy, parse_policy
from .stage import Stage

STAGE_OPTIONS = frozenset(
    {
        "to",
        "from_",
        "queue_size",
        "fanout",
        "on_error",
        "dead_letter",
        "ordered",
        "reorder_window",
        "chunk_size",
        "init",
        "before",
        "after",
        "before_fork",
        "after_fork",
        "max_restarts",
        "restart_window_s",
        "timeout",
        "context",
        "max_in_flight",
        *STRATEGIES,
    }
)
FANOUTS = ("broadcast", "round_robin")
Hook = Callable[[], Any]


def _names(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _hooks(value: Hook | Sequence[Hook] | None) -> list[Hook]:
    if value is None:
        return []
    if callable(value):
        return [value]
    return list(value)


@dataclass
class StageSpec:
    """A stage and how to run and wire it; ``name`` becomes dotted inside nested pipelines."""

    stage: Stage
    name: str
    strategy: Strategy
    to: tuple[str, ...] | None = None
    from_: tuple[str, ...] | None = None
    queue_size: int | None = None
    fanout: str = "broadcast"
    policy: ErrorPolicy = field(default_factory=ErrorPolicy)
    dead_letter: str | Callable[[Any, BaseException], Any] | None = None
    ordered: bool = False
    reorder_window: int = 0
    chunk_size: int = 0
    init: Callable[[], Any] | None = None
    before: list[Hook] = field(default_factory=list)
    after: list[Hook] = field(default_factory=list)
    before_fork: list[Hook] = field(default_factory=list)
    after_fork: list[Hook] = field(default_factory=list)
    max_restarts: int = 0
    restart_window_s: float = 0.0
    timeout: float | None = None
    max_in_flight: int = 0  # distributed stages: jobs queued or running at once (0: default)
    scope: str = ""  # dotted prefix of the nested pipeline it was declared in

    @property
    def kind(self) -> str:
        return self.stage.kind

    @property
    def local_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    @property
    def workers(self) -> int:
        return 1 if self.stage.single_worker else self.strategy.size


def job_function(stage: str, fn: Any) -> Any:
    """Check that ``fn`` is a job registered with ``@app.job`` (it carries its app)."""
    if not (hasattr(fn, "aenqueue") and hasattr(fn, "spec") and hasattr(fn, "app")):
        raise PipelineDefinitionError(
            f"stage {stage!r} is distributed='queue', so its function must be a job registered "
            f"with @app.job (workers find it by its job type); got {fn!r}"
        )
    return fn


def make_spec(stage: Stage, options: dict[str, Any]) -> StageSpec:
    """Validate ``options`` for ``stage`` and build its spec."""
    options = {**stage.options, **options}
    name = stage.name
    unknown = sorted(set(options) - STAGE_OPTIONS)
    if unknown:
        raise PipelineDefinitionError(
            f"stage {name!r}: unknown option(s) {', '.join(unknown)}; "
            f"known options: {', '.join(sorted(STAGE_OPTIONS))}"
        )
    if "." in name or not name:
        raise PipelineDefinitionError(f"stage name {name!r} must be non-empty and have no '.'")
    strategy = parse_strategy(name, options)
    context = options.pop("context", None)
    if context is not None:
        if strategy.kind != "inline":
            raise PipelineDefinitionError(
                f"stage {name!r}: give either context= or a strategy, not both"
            )
        strategy = Strategy("inline", 1, context)
    d = defaults()
    spec = StageSpec(
        stage=stage,
        name=name,
        strategy=strategy,
        to=_names(options.get("to")),
        from_=_names(options.get("from_")),
        queue_size=options.get("queue_size"),
        fanout=options.get("fanout", "broadcast"),
        policy=parse_policy(name, options.get("on_error", "raise")),
        dead_letter=options.get("dead_letter"),
        ordered=bool(options.get("ordered", d.ordered)),
        reorder_window=int(options.get("reorder_window", d.reorder_window)),
        chunk_size=int(options.get("chunk_size", d.chunk_size)),
        init=options.get("init"),
        before=_hooks(options.get("before")),
        after=_hooks(options.get("after")),
        before_fork=_hooks(options.get("before_fork")),
        after_fork=_hooks(options.get("after_fork")),
        max_restarts=int(options.get("max_restarts", d.max_restarts)),
        restart_window_s=float(options.get("restart_window_s", d.restart_window_s)),
        timeout=options.get("timeout"),
        max_in_flight=int(options.get("max_in_flight", 0)),
    )
    _check(spec)
    return spec


def _check(spec: StageSpec) -> None:
    name = spec.name
    if spec.queue_size is not None and (
        not isinstance(spec.queue_size, int) or spec.queue_size < 1
    ):
        raise PipelineDefinitionError(
            f"stage {name!r}: queue_size must be a positive integer (channels are always "
            f"bounded), got {spec.queue_size!r}"
        )
    if spec.fanout not in FANOUTS:
        raise PipelineDefinitionError(
            f"stage {name!r}: fanout must be one of {', '.join(FANOUTS)}, got {spec.fanout!r}"
        )
    if spec.reorder_window < 1 or spec.chunk_size < 1:
        raise PipelineDefinitionError(
            f"stage {name!r}: reorder_window and chunk_size must be at least 1"
        )
    if spec.kind == "producer" and (spec.from_ or spec.queue_size is not None):
        raise PipelineDefinitionError(
            f"producer {name!r} has no input: from_= and queue_size= do not apply"
        )
    if spec.kind == "consumer" and spec.to:
        raise PipelineDefinitionError(f"consumer {name!r} sends nothing on, so to= cannot apply")
    _check_strategy(spec)


def _out_of_process_problem(spec: StageSpec) -> str | None:
    if spec.stage.single_worker or spec.kind == "producer":
        return f"a {type(spec.stage).__name__} stage runs in this process only"
    if spec.stage.function() is None:
        # a custom Stage keeps state on its instance, which a child process cannot share
        return "only function stages can run out of process (items travel as JSON)"
    if spec.strategy.kind == "distributed":
        job_function(spec.name, spec.stage.function())
    return None


def _check_strategy(spec: StageSpec) -> None:
    name, kind, strategy = spec.name, spec.kind, spec.strategy
    if spec.stage.is_async and strategy.kind == "inline" and not strategy.context:
        spec.strategy = strategy = Strategy("asyncio", 1)  # async, no strategy: one coroutine
    problem = None
    if kind == "producer" and strategy.kind not in ("inline", "asyncio"):
        problem = "a producer runs once, in-process: give it no strategy (or asyncio=1)"
    elif spec.stage.single_worker and strategy.size > 1:
        problem = "it runs a single worker"
    elif spec.stage.is_async and strategy.kind not in ("asyncio", "inline"):
        problem = "it is async: give it asyncio=N"
    elif kind == "producer" and strategy.kind == "asyncio" and not spec.stage.is_async:
        problem = "a plain function producer cannot take asyncio=; make it an async generator"
    elif (
        spec.timeout is not None
        and strategy.kind in ("inline", "threads")
        and not (strategy.context)
    ):
        problem = "timeout= needs asyncio, processes or forks (a thread cannot be interrupted)"
    elif strategy.kind in OUT_OF_PROCESS or strategy.kind == "distributed":
        problem = _out_of_process_problem(spec)
    if spec.max_in_flight and strategy.kind != "distributed":
        problem = "max_in_flight= applies to distributed='queue' stages only"
    if problem:
        raise PipelineDefinitionError(f"stage {name!r} cannot take {strategy.label}: {problem}")
