"""Testing your own jobs: run them inline at enqueue, or drain real queues in a test.

* ``App(inline=True)`` (or ``inline_mode(app)``) runs each job in the calling process when it is
  enqueued, with the same JSON round trip of its arguments a worker would see. Exceptions
  propagate to the caller; the handle's ``status()``/``result()`` give the outcome.
* ``drain(app)`` runs a real worker against Redis until every queue the app uses is empty and
  nothing is running, then returns what it did: the way to test retries, schedules and status.
* The pytest plugin (``pytest -p conveyor.testing``) adds the ``conveyor_drain`` fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .job import loads, now_s

if TYPE_CHECKING:
    from .app import App
    from .broker import EnqueueItem
    from .client import JobStatus

DRAIN_POLL_S = 0.02
DRAIN_TIMEOUT_S = 30.0


def run_inline(app: App, item: EnqueueItem) -> JobStatus:
    """Run one job now, in this process, and return its final status."""
    from .client import JobStatus

    payload = loads(item.raw)
    spec = app.spec(item.name)
    started = now_s()
    result = spec.fn(*payload["args"], **payload.get("kwargs", {}))
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    if result is not None:
        result = loads(_dumps(result))
    return JobStatus(jid=item.jid, state="completed", name=item.name, queue=item.queue,
                     attempts=1, created_at=payload.get("created_at"), started_at=started,
                     finished_at=now_s(), result=result)


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _dumps(value: Any) -> bytes:
    from .job import dumps

    return dumps(value)


@contextlib.contextmanager
def inline_mode(app: App) -> Iterator[App]:
    """Within the block, jobs of ``app`` run at enqueue time in the calling process."""
    before = app.inline
    app.inline = True
    try:
        yield app
    finally:
        app.inline = before


@dataclass
class DrainReport:
    processed: int
    failed: int
    seconds: float


def drain(app: App, *, timeout_s: float = DRAIN_TIMEOUT_S, concurrency: int = 10,
          include_scheduled: bool = False) -> DrainReport:
    """Run a worker until the app's queues are empty and no job runs; ``include_scheduled``
    also waits for scheduled jobs and retries that are due within the timeout."""
    return asyncio.run(adrain(app, timeout_s=timeout_s, concurrency=concurrency,
                              include_scheduled=include_scheduled))


async def adrain(app: App, *, timeout_s: float = DRAIN_TIMEOUT_S, concurrency: int = 10,
                 include_scheduled: bool = False) -> DrainReport:
    from .worker import Worker

    worker = Worker(app, concurrency=concurrency)
    stop = asyncio.Event()
    started = time.monotonic()
    runner = asyncio.create_task(worker.run(stop))
    try:
        while time.monotonic() - started < timeout_s:
            await asyncio.sleep(DRAIN_POLL_S)
            if runner.done():
                break
            if await _is_drained(worker, include_scheduled):
                break
        else:
            raise TimeoutError(f"queues were not drained within {timeout_s}s")
    finally:
        stop.set()
        await runner
    return DrainReport(worker.processed, worker.failed, time.monotonic() - started)


async def _is_drained(worker: Any, include_scheduled: bool) -> bool:
    if not hasattr(worker, "broker") or worker.running:
        return False
    r, k = worker.broker.redis, worker.broker.keys
    pipe = r.pipeline(transaction=False)
    for q in worker.queue_names:
        pipe.llen(k.queue(q))
        pipe.llen(k.claim(worker.identity, q))
    pipe.hlen(k.inflight(worker.identity))
    if include_scheduled:
        pipe.zcard(k.schedule)
        pipe.zcard(k.retry)
    counts = await pipe.execute()
    return not any(counts) and not worker.running and not worker._acks


# --- pytest plugin (registered as the ``conveyor`` pytest11 entry point) -----------------------
try:
    import pytest
except ImportError:  # pytest is optional: the plugin only exists where pytest does
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture(scope="session")
    def conveyor_redis_server(tmp_path_factory: Any) -> Iterator[str]:
        """A private embedded Redis for the test session (AOF off is not needed: it is a temp
        folder); yields its URL and stops it afterwards."""
        from .embedded import ensure_server, stop_server

        folder = tmp_path_factory.mktemp("conveyor-redis")
        url = ensure_server(folder)
        try:
            yield url
        finally:
            stop_server(folder)

    @pytest.fixture
    def conveyor_redis(conveyor_redis_server: str) -> str:
        """The session's embedded Redis URL, emptied before the test."""
        import redis

        client = redis.Redis.from_url(conveyor_redis_server)
        try:
            client.flushall()
        finally:
            client.close()
        return conveyor_redis_server

    @pytest.fixture
    def conveyor_drain() -> Any:
        """The :func:`drain` function: run a real worker until the app's queues are empty."""
        return drain
