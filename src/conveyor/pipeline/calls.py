"""How a user's stage function is called, decided once from its signature.

A stage function gets the item as its first argument and may also ask for ``emit`` (to send
zero or more items, or ``emit.to("stage", item)`` to one named output) and ``state`` (what the
stage's ``init`` returned in this worker), by naming those parameters. Without ``emit`` a
generator's yielded items are the outputs and a plain function's return value is the single
output (``None`` included). A consumer's return value is ignored.

The adapters below turn each shape into one ``call(item, emit, state)`` so the drivers' hot
loops have no branches on the shape.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import PipelineDefinitionError

SyncCall = Callable[[Any, Any, Any], None]
AsyncCall = Callable[[Any, Any, Any], Any]


@dataclass(frozen=True)
class Shape:
    """What a stage function looks like."""

    is_async: bool
    is_generator: bool
    wants_emit: bool
    wants_state: bool
    positional: int  # required positional parameters besides emit/state
    takes_one: bool  # can be called with exactly one positional argument


def shape_of(fn: Callable[..., Any], stage: str) -> Shape:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError) as exc:
        raise PipelineDefinitionError(
            f"stage {stage!r}: cannot read the signature of {fn!r}"
        ) from exc
    plain = [
        p
        for name, p in params.items()
        if name not in ("emit", "state") and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    required = [p for p in plain if p.default is p.empty]
    varargs = any(p.kind is p.VAR_POSITIONAL for p in params.values())
    raw = inspect.unwrap(fn)
    call = getattr(raw, "__call__", None)  # noqa: B004 - instances with async __call__
    is_async = (
        inspect.iscoroutinefunction(raw)
        or inspect.isasyncgenfunction(raw)
        or (call is not None and inspect.iscoroutinefunction(call) and not inspect.isfunction(raw))
    )
    return Shape(
        is_async=is_async,
        is_generator=inspect.isgeneratorfunction(raw) or inspect.isasyncgenfunction(raw),
        wants_emit="emit" in params,
        wants_state="state" in params,
        positional=len(required),
        takes_one=len(required) <= 1 and (len(plain) >= 1 or varargs),
    )


def _kwargs(shape: Shape, emit: Any, state: Any) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if shape.wants_emit:
        kw["emit"] = emit
    if shape.wants_state:
        kw["state"] = state
    return kw


def sync_item_call(fn: Callable[..., Any], shape: Shape, emits: bool) -> SyncCall:
    """``call(item, emit, state)`` for a sync processor (``emits``) or consumer."""
    if shape.wants_emit or shape.wants_state:
        if shape.is_generator:

            def gen_kw(item: Any, emit: Any, state: Any) -> None:
                for out in fn(item, **_kwargs(shape, emit, state)):
                    emit(out)

            return gen_kw
        if emits and not shape.wants_emit:
            return lambda item, emit, state: emit(fn(item, state=state))
        return lambda item, emit, state: fn(item, **_kwargs(shape, emit, state))
    if shape.is_generator:

        def gen(item: Any, emit: Any, state: Any) -> None:
            for out in fn(item):
                emit(out)

        return gen
    if emits:
        return lambda item, emit, state: emit(fn(item))
    return lambda item, emit, state: fn(item)


def async_item_call(fn: Callable[..., Any], shape: Shape, emits: bool) -> AsyncCall:
    """``await call(item, emit, state)`` for an async processor or consumer.

    A plain function is called directly on the loop (it must not block).
    """
    if not shape.is_async:
        sync = sync_item_call(fn, shape, emits)

        async def plain(item: Any, emit: Any, state: Any) -> None:
            sync(item, emit, state)

        return plain

    async def call(item: Any, emit: Any, state: Any) -> None:
        kw = _kwargs(shape, emit, state)
        if shape.is_generator:
            async for out in fn(item, **kw):
                emit(out)
            return
        result = await fn(item, **kw)
        if emits and not shape.wants_emit:
            emit(result)

    return call


def sync_produce_call(fn: Callable[..., Any], shape: Shape) -> SyncCall:
    """``call(None, emit, state)`` for a sync producer: a generator, an iterable or emit-style."""

    def produce(_: Any, emit: Any, state: Any) -> None:
        result = fn(**_kwargs(shape, emit, state))
        if result is not None and not shape.wants_emit:
            for out in result:
                emit(out)

    return produce


def async_produce_call(fn: Callable[..., Any], shape: Shape) -> AsyncCall:
    """For an async producer: an async generator, or a coroutine returning an iterable."""

    async def produce(_: Any, emit: Any, state: Any) -> None:
        kw = _kwargs(shape, emit, state)
        if shape.is_generator:
            async for out in fn(**kw):
                await emit.send(out)
            return
        result = await fn(**kw)
        if result is not None and not shape.wants_emit:
            for out in result:
                await emit.send(out)

    return produce
