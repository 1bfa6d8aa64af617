"""The child-process side of a process or fork stage: run a chunk of items, report each one.

The parent registers one function per stage, under the stage's name, in the executor's
``functions`` mapping; the worker processes inherit it when forked (no pickling, so closures and
lambdas work). A task carries a list of items and returns one entry per item, in order:

* ``[0, outputs, routed, nanos]``: the item's default-routed outputs, its ``emit.to`` pairs
  (``[[stage, item], ...]`` or ``None``), and how long it took in nanoseconds;
* ``[1, error_class, message, nanos]``: the item raised.

So one bad item fails alone and the parent applies the stage's error policy to it. The stage's
``init`` runs once per process that has no state yet (each ``processes`` worker; for ``forks``,
once in the zygote, so every child shares it copy-on-write), and the ``after_fork`` hooks run
once in every child process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from ..errors import SerializationError
from ..job import dumps
from .calls import SyncCall
from .emit import BufferEmitter
from .wire import not_json

NANOS = 1_000_000_000


class ChunkRunner:
    """Callable registered for one stage; what a worker process runs for each task."""

    def __init__(
        self,
        stage: str,
        call: SyncCall,
        init: Callable[[], Any] | None,
        after_fork: list[Callable[[], Any]],
    ) -> None:
        self.stage = stage
        self.call = call
        self.init = init
        self.after_fork = after_fork
        self.state: Any = None
        self.has_state = init is None
        self._pid = os.getpid()  # the parent's: hooks run on the first chunk in another pid

    def prepare(self) -> None:
        """Run ``init`` now (the fork executor calls this in its zygote)."""
        if not self.has_state and self.init is not None:
            self.state = self.init()
            self.has_state = True

    def __call__(self, items: list[Any]) -> list[list[Any]]:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            for hook in self.after_fork:
                hook()
        self.prepare()
        results: list[list[Any]] = []
        perf = time.perf_counter
        for item in items:
            emit = BufferEmitter()
            started = perf()
            try:
                self.call(item, emit, self.state)
            except Exception as exc:
                took = int((perf() - started) * NANOS)
                results.append([1, type(exc).__name__, str(exc), took])
                continue
            took = int((perf() - started) * NANOS)
            outs = [x for target, x in emit.items if target is None]
            routed = [[t, x] for t, x in emit.items if t is not None] or None
            results.append([0, outs, routed, took])
        try:
            dumps(results)
        except SerializationError:
            self._blame(results)
        return results

    def _blame(self, results: list[list[Any]]) -> None:
        """Turn each entry whose outputs JSON cannot carry into that item's error."""
        for i, entry in enumerate(results):
            try:
                dumps(entry)
            except SerializationError as exc:
                error = not_json(self.stage, entry[1], str(exc), "outputs")
                results[i] = [1, "SerializationError", str(error), entry[3]]
