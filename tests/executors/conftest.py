"""Fixtures for executor tests: executors that are always stopped, and no stray processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from conveyor.executors import Executor, create_executor


@pytest.fixture
async def make_executor() -> AsyncIterator[Callable[..., Any]]:
    """``await make_executor(kind, functions, capacity, **options)``: built, started, and
    stopped when the test ends."""
    made: list[Executor] = []

    async def make(kind: str, functions: Any, capacity: int, **options: Any) -> Executor:
        executor = create_executor(kind, functions, capacity, **options)
        made.append(executor)
        await executor.start()
        return executor

    yield make
    for executor in reversed(made):
        await executor.stop(0)
