"""Executors: where job and stage code runs. ``create_executor`` builds one by its kind name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigurationError
from .asyncio import AsyncioExecutor, current_task_context
from .base import Executor, ExecutorStats, Outcome, Task
from .thread import ThreadExecutor

EXECUTOR_KINDS: dict[str, type[Executor]] = {
    "asyncio": AsyncioExecutor,
    "thread": ThreadExecutor,
}


def register_executor(kind: str, cls: type[Executor]) -> None:
    """Make an executor class available under ``kind`` (used by the optional executors)."""
    EXECUTOR_KINDS[kind] = cls


def create_executor(
    kind: str, functions: Mapping[str, Callable[..., Any]], capacity: int, **options: Any
) -> Executor:
    """Build an executor by kind: ``asyncio``, ``thread`` (and more as they are registered)."""
    _load_optional()
    try:
        cls = EXECUTOR_KINDS[kind]
    except KeyError:
        known = ", ".join(sorted(EXECUTOR_KINDS))
        raise ConfigurationError(f"unknown executor {kind!r}; known executors: {known}") from None
    return cls(functions, capacity, **options)


def _load_optional() -> None:
    """Import the optional executor modules that exist, so they register themselves."""
    import importlib

    for module in ("process", "fork", "http", "interpreter"):
        try:
            importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{module}":
                raise


__all__ = [
    "EXECUTOR_KINDS",
    "AsyncioExecutor",
    "Executor",
    "ExecutorStats",
    "Outcome",
    "Task",
    "ThreadExecutor",
    "create_executor",
    "current_task_context",
    "register_executor",
]
