"""Shared pieces of the API and dashboard tests: an app with job types, tokens, a real uvicorn
server on a free port, and a real worker in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from conveyor import App
from conveyor.api import ApiConfig, BackgroundServer, make_server, parse_token
from conveyor.settings import Settings
from conveyor.worker import Worker

ADMIN = "admin-secret-0123456789abcdefghij"
ENQUEUE = "enqueue-secret-0123456789abcdefgh"
READ = "read-secret-0123456789abcdefghijkl"
WRONG = "wrong-secret-0123456789abcdefghijk"
FAST = dict(lease_ttl_s=2.0, heartbeat_interval_s=0.2, recoverer_interval_s=0.5,
            scheduler_interval_s=0.1, idle_block_s=0.2, shutdown_grace_s=2.0)


def make_app(redis_url: str) -> App:
    """Job types the tests use: echo returns its arguments; boom fails straight to the dead
    set the first time (and succeeds once its argument says so); slow waits."""
    app = App(settings=Settings(redis_url=redis_url, **FAST))

    @app.job(name="echo")
    def echo(*args: Any, **kwargs: Any) -> Any:
        return {"args": list(args), "kwargs": kwargs}

    @app.job(name="boom", retry=0)
    def boom(message: str, **kwargs: Any) -> str:
        if kwargs.get("fixed_flag") and FIXED.is_set():
            return "fixed"
        raise ValueError(message)

    @app.job(name="slow", queue="slow")
    def slow(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    return app


FIXED = threading.Event()  # lets a dead "boom" job succeed when requeued


def config(**overrides: Any) -> ApiConfig:
    tokens = [parse_token(f"admin:{ADMIN}"), parse_token(f"enqueue:{ENQUEUE}"),
              parse_token(f"read:{READ}")]
    values: dict[str, Any] = {"port": 0, "tokens": tokens, "history_sample_s": 0.2}
    values.update(overrides)
    return ApiConfig(**values)


@contextlib.contextmanager
def running_api(app: App, **overrides: Any) -> Iterator[BackgroundServer]:
    server = BackgroundServer(make_server(config(**overrides), app)).start()
    try:
        yield server
    finally:
        server.stop()


def client(server: BackgroundServer, token: str | None = None, **kw: Any) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=10.0, **kw)


class WorkerThread:
    """A real worker running its own event loop in a thread, stopped gracefully."""

    def __init__(self, app: App, **options: Any) -> None:
        self.worker = Worker(app, **options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def run() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await self.worker.run(self._stop)

        asyncio.run(run())

    def __enter__(self) -> Worker:
        self.thread.start()
        self._ready.wait(10)
        wait_until(lambda: hasattr(self.worker, "heartbeat"), what="worker start")
        return self.worker

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(20)


def wait_until(cond: Callable[[], Any], timeout_s: float = 15.0, what: str = "") -> Any:
    """Poll ``cond`` until it is truthy; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or cond}")
        time.sleep(0.02)
