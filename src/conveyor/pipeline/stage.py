"""Stages: what the decorators build, the base class for custom stages, batch and unbatch.

A custom stage subclasses :class:`Stage` and overrides ``process(item, emit)``; it may also
override ``start()`` (once, before the first item), ``finish(emit)`` (once, after the last item:
flush what it holds) and, to be woken without input, ``wait_s()``/``tick(emit)``. With several
workers, ``process`` runs concurrently on the same instance, so shared state needs a lock or
``single_worker = True`` (as :class:`Batch` has).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

from ..errors import PipelineDefinitionError
from .calls import (
    AsyncCall,
    Shape,
    SyncCall,
    async_item_call,
    async_produce_call,
    shape_of,
    sync_item_call,
    sync_produce_call,
)


class Stage:
    """Base class of every stage. Subclass it for a custom stage."""

    kind: ClassVar[str] = "processor"  # producer | processor | consumer
    single_worker: ClassVar[bool] = False
    is_async: ClassVar[bool] = False

    def __init__(self, name: str | None = None, **options: Any) -> None:
        self.name = name or type(self).__name__.lower()
        self.options = options

    def start(self) -> None:
        """Runs once before the stage gets its first item."""

    def process(self, item: Any, emit: Any) -> None:
        """Handle one item; ``emit(x)`` sends ``x`` on, ``emit.to("stage", x)`` to one output."""
        raise NotImplementedError(f"{type(self).__name__} must define process(item, emit)")

    def finish(self, emit: Any) -> None:
        """Runs once after the last item (not when the run fails)."""

    def wait_s(self) -> float | None:
        """Seconds until :meth:`tick` should run even if no item comes; None: never."""
        return None

    def tick(self, emit: Any) -> None:
        """Called when :meth:`wait_s` expires with no item."""

    # What the drivers call. Function stages bind these to the user's function instead.
    def sync_call(self) -> SyncCall:
        return lambda item, emit, state: self.process(item, emit)

    def async_call(self) -> AsyncCall:
        raise PipelineDefinitionError(f"stage {self.name!r} has no async form")

    def function(self) -> Callable[..., Any] | None:
        """The user function behind this stage, if any (used for naming and validation)."""
        return None


class FunctionStage(Stage):
    """A processor or consumer made from a function by ``@pipe.processor`` / ``@pipe.consumer``."""

    def __init__(self, fn: Callable[..., Any], kind: str, name: str | None = None) -> None:
        super().__init__(name or getattr(fn, "__name__", "stage"))
        self.fn = fn
        self.kind = kind  # type: ignore[misc]
        self.shape: Shape = shape_of(fn, self.name)
        self.is_async = self.shape.is_async  # type: ignore[misc]
        if not self.shape.takes_one:
            raise PipelineDefinitionError(
                f"{kind} {self.name!r} must take the item as its one positional parameter "
                f"(plus optional emit= and state=); {fn!r} takes {self.shape.positional}"
            )
        if kind == "consumer" and self.shape.wants_emit:
            raise PipelineDefinitionError(
                f"consumer {self.name!r} asks for emit, but consumers send nothing on; "
                "make it a processor"
            )

    def sync_call(self) -> SyncCall:
        if self.is_async:
            raise PipelineDefinitionError(
                f"stage {self.name!r} is an async function; give it asyncio=N (or make it sync)"
            )
        return sync_item_call(self.fn, self.shape, self.kind == "processor")

    def async_call(self) -> AsyncCall:
        return async_item_call(self.fn, self.shape, self.kind == "processor")

    def function(self) -> Callable[..., Any]:
        return self.fn


class ProducerStage(Stage):
    """A source: a generator, a function returning an iterable, or one taking ``emit``."""

    kind = "producer"
    single_worker = True

    def __init__(self, fn: Callable[..., Any], name: str | None = None) -> None:
        super().__init__(name or getattr(fn, "__name__", "producer"))
        self.fn = fn
        self.shape = shape_of(fn, self.name)
        self.is_async = self.shape.is_async  # type: ignore[misc]
        if self.shape.positional:
            raise PipelineDefinitionError(
                f"producer {self.name!r} takes no item; its only parameters may be emit and state"
            )

    def sync_call(self) -> SyncCall:
        return sync_produce_call(self.fn, self.shape)

    def async_call(self) -> AsyncCall:
        return async_produce_call(self.fn, self.shape)

    def function(self) -> Callable[..., Any]:
        return self.fn


class IterableSource(ProducerStage):
    """The producer ``run(source=...)`` adds: emits every item of an iterable."""

    def __init__(self, items: Any, name: str = "source") -> None:
        self.items = items
        super().__init__(lambda: iter(self.items), name)


class Batch(Stage):
    """Group items into lists of ``size``; flush after ``max_wait`` seconds, and at the end."""

    single_worker = True

    def __init__(
        self,
        size: int,
        max_wait: float | None = None,
        name: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        **options: Any,
    ) -> None:
        if size < 1:
            raise PipelineDefinitionError(f"batch size must be at least 1, got {size}")
        if max_wait is not None and max_wait <= 0:
            raise PipelineDefinitionError(f"batch max_wait must be positive, got {max_wait}")
        super().__init__(name or "batch", **options)
        self.size = size
        self.max_wait = max_wait
        self._clock = clock
        self._items: list[Any] = []
        self._first_at = 0.0

    def start(self) -> None:
        self._items = []

    def process(self, item: Any, emit: Any) -> None:
        if not self._items:
            self._first_at = self._clock()
        self._items.append(item)
        if len(self._items) >= self.size:
            self._flush(emit)

    def wait_s(self) -> float | None:
        if self.max_wait is None or not self._items:
            return None
        return max(0.0, self._first_at + self.max_wait - self._clock())

    def tick(self, emit: Any) -> None:
        if self._items and self.wait_s() == 0.0:
            self._flush(emit)

    def finish(self, emit: Any) -> None:
        if self._items:
            self._flush(emit)

    def _flush(self, emit: Any) -> None:
        batch, self._items = self._items, []
        emit(batch)


class Unbatch(Stage):
    """Send on each element of every incoming list (or other iterable)."""

    def __init__(self, name: str | None = None, **options: Any) -> None:
        super().__init__(name or "unbatch", **options)

    def process(self, item: Any, emit: Any) -> None:
        for element in item:
            emit(element)

    def sync_call(self) -> SyncCall:
        def unbatch(item: Any, emit: Any, state: Any) -> None:
            for element in item:
                emit(element)

        return unbatch
