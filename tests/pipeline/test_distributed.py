"""``distributed="queue"``: items run as jobs on a real worker over a real Redis, and their
results flow back into the pipeline."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor import App
from conveyor.context import current_job
from conveyor.errors import PipelineDefinitionError, StageFailed
from conveyor.pipeline import Pipeline
from worker_helpers import fast_app, running_worker

WORKER_START_S = 15.0


def square(x: int) -> list[Any]:
    return [x * x, current_job().jid]


def invert(x: int) -> float:
    return 1 / x


JOBS: dict[str, Any] = {}


@pytest.fixture
def app(redis_url: str) -> Iterator[App]:
    """The app with its job types registered before any worker starts (as in production)."""
    app = fast_app(redis_url)
    JOBS["square"] = app.job(square, name="pipe.square", retry=0)
    JOBS["invert"] = app.job(invert, name="pipe.invert", retry=0)
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def worker(app: App) -> Iterator[None]:
    """A real worker for ``app``, on its own thread and event loop, like another machine's."""
    ready, stop = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def serve() -> None:
        async def main() -> None:
            async with running_worker(app, concurrency=8):
                ready.set()
                await asyncio.to_thread(stop.wait)

        try:
            asyncio.run(main())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=serve, name="test-worker")
    thread.start()
    assert ready.wait(WORKER_START_S)
    try:
        yield
    finally:
        stop.set()
        thread.join(WORKER_START_S)
        assert not errors, errors


def test_items_become_jobs_and_results_come_back(app: App, worker: None) -> None:
    pipe = Pipeline("dist")
    pipe.processor(JOBS["square"], name="square", distributed="queue", max_in_flight=4)
    pipe.processor(lambda pair: pair[0], name="value")
    result = pipe.run(range(12), collect=True)
    assert sorted(result.outputs) == [x * x for x in range(12)]
    stage = result.stats.stage("square")
    assert stage.items_in == 12 and stage.workers == 4


def test_failed_job_goes_through_the_stage_policy(app: App, worker: None) -> None:
    invert = JOBS["invert"]
    pipe = Pipeline("dist")
    pipe.processor(invert, name="invert", distributed="queue", on_error="skip")
    result = pipe.run([1, 0, 2], collect=True)
    assert sorted(result.outputs) == [0.5, 1.0]
    assert result.stats.stage("invert").skipped == 1

    pipe = Pipeline("dist")
    pipe.processor(invert, name="invert", distributed="queue")
    with pytest.raises(StageFailed, match="ZeroDivisionError"):
        pipe.run([0])


def test_distributed_needs_a_registered_job() -> None:
    with pytest.raises(PipelineDefinitionError, match=r"registered with @app\.job"):
        Pipeline().processor(lambda x: x, name="plain", distributed="queue")
