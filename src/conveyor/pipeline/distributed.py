"""``distributed="queue"``: a stage whose items run as jobs on Conveyor workers, anywhere.

The stage function must be a job registered with ``@app.job`` (a ``JobFunction``): each item is
enqueued as one job of that type on the app's Redis, any worker on any machine runs it, and the
job's result comes back through its handle (``aresult``) as the stage's output (a consumer
stage only waits for it, so failures still surface). ``max_in_flight=N`` bounds how many of the
stage's jobs are queued or running at once, which is this stage's backpressure; the default is
``DEFAULT_IN_FLIGHT``. Items and results travel as JSON.

A job that ends dead, failed or cancelled makes ``aresult`` raise ``JobFailed``, which goes
through the stage's error policy like any item error. The job type's own retries (``retry=`` on
``@app.job``) run first, on the workers; give the job ``retry=0`` to let the pipeline's
``on_error=retry(...)`` decide instead. ``timeout=`` bounds the wait for each result.
"""

from __future__ import annotations

from typing import Any

from .aio import AsyncDriver
from .spec import job_function

DEFAULT_IN_FLIGHT = 64


class QueueDriver(AsyncDriver):
    """Runs each item as a job on the job queue and waits for its result."""

    def worker_count(self) -> int:
        return self.spec.max_in_flight or DEFAULT_IN_FLIGHT

    async def prepare(self) -> None:
        self.job = job_function(self.name, self.spec.stage.function())
        # Connect once before the workers start: concurrent first calls to the client would
        # each build a connection pool and keep only one (the others leak).
        await self.job.app.client.async_broker()

    def start(self) -> None:
        self._call = self._run_job
        self._gate = None
        self._reorder = None
        if self.spec.ordered and len(self.workers) > 1:
            from .order import AsyncReorderer

            self._reorder = AsyncReorderer(self.spec.reorder_window)
        self.tasks = [
            self.run.loop.create_task(self._work(i), name=f"conveyor-{self.name}-job-{i}")
            for i in range(len(self.workers))
        ]

    async def stop(self, grace_s: float) -> None:
        await super().stop(grace_s)
        if hasattr(self, "job"):
            # the app's async Redis pool belongs to this run's loop, which ends with the run
            await self.job.app.client.aclose()

    async def _run_job(self, item: Any, emit: Any, state: Any) -> None:
        handle = await self.job.aenqueue(item)
        value = await handle.aresult(timeout=self.spec.timeout)
        if self.spec.kind == "processor":
            emit(value)

    async def _timed(self, call: Any) -> None:
        await call  # the timeout applies to the wait for the result, inside _run_job
