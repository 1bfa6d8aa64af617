"""Sub-interpreters (PEP 734): each job in an interpreter with its own GIL, inside the worker.

Not available on this Python. The public API (``concurrent.interpreters``) arrives in Python
3.14; 3.12 and 3.13 have only private modules whose interface changes between releases, and
3.11 has nothing. Passing job code to a sub-interpreter would also need the job's module to be
importable there and its arguments to be shareable without pickle, which the project rule
forbids. Until then, ``executor="interpreter"`` fails at start with a message naming the
fallback: ``process`` (a persistent pool of processes) gives the same isolation from the
worker's GIL at the price of one process per slot.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigurationError
from . import register_executor
from .base import Executor, Outcome, Task

REQUIRED_PYTHON = (3, 14)


def unavailable_reason() -> str:
    """Why the interpreter executor cannot run here, and what to use instead."""
    have = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info < REQUIRED_PYTHON:
        need = f"Python {REQUIRED_PYTHON[0]}.{REQUIRED_PYTHON[1]}+ (concurrent.interpreters)"
        problem = f"the interpreter executor needs {need}; this is Python {have}"
    else:
        problem = (f"the interpreter executor is not built yet for Python {have} "
                   "(sub-interpreters are on the roadmap)")
    return (f"{problem}. Use executor='process' instead: a persistent pool of worker processes "
            "with the same isolation (see docs/executors.md).")


class InterpreterExecutor(Executor):
    """Refuses to be built, with the reason and the fallback (see the module docstring)."""

    kind = "interpreter"

    def __init__(self, functions: Mapping[str, Callable[..., Any]], capacity: int = 1,
                 **options: Any) -> None:
        raise ConfigurationError(unavailable_reason())

    async def run(self, task: Task) -> Outcome:  # pragma: no cover - never constructed
        raise ConfigurationError(unavailable_reason())


register_executor("interpreter", InterpreterExecutor)
