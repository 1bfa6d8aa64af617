"""The testing support users get: inline mode, drain, and the pytest fixtures."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor import App, current_job
from conveyor.settings import Settings
from conveyor.testing import inline_mode


def test_inline_mode_runs_at_enqueue_with_a_json_round_trip() -> None:
    app = App(inline=True)

    @app.job
    def shape(data: dict[str, Any]) -> dict[str, Any]:
        return {"keys": sorted(data), "tuple_became": data["t"]}

    h = shape.enqueue({"b": 1, "a": 2, "t": (1, 2)})
    assert h.result() == {"keys": ["a", "b", "t"], "tuple_became": [1, 2]}
    assert h.status().state == "completed"


def test_inline_mode_propagates_exceptions() -> None:
    app = App()

    @app.job
    def boom() -> None:
        raise KeyError("x")

    with inline_mode(app), pytest.raises(KeyError):
        boom.enqueue()
    assert app.inline is False


def test_drain_fixture_runs_a_real_worker(conveyor_redis: str, conveyor_drain: Any) -> None:
    app = App(settings=Settings(redis_url=conveyor_redis, idle_block_s=0.1))
    seen: list[tuple[int, int]] = []

    @app.job
    def record(i: int) -> None:
        seen.append((i, current_job().attempt))

    for i in range(5):
        record.enqueue(i)
    report = conveyor_drain(app)
    assert sorted(seen) == [(i, 1) for i in range(5)] and report.processed == 5
    app.close()
