"""Fixtures of the interop suite: real Ruby (Sidekiq 6.4.1, ActiveJob 6.1), real processes.

* ``ruby(command, params)`` runs one ``ruby/driver.rb`` client command against the test's Redis.
* ``sidekiq(queues=..., concurrency=...)`` starts a real ``sidekiq`` server process; every one
  started is stopped by its pid at the end of the test.
* ``web_ui`` serves the Sidekiq Web UI with Rack + WEBrick on a free port.
* ``conveyor(app, queues)`` runs a Conveyor worker in a thread of this process.

Without Ruby or Sidekiq these tests skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from interop_helpers import (
    LOG_DIR,
    RUBY_DIR,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    ConveyorThread,
    Recorder,
    Ruby,
    SidekiqProcess,
    fast_app,
    probe_ruby,
    ruby_env,
    wait_until,
)

from conveyor import App
from redis_server import free_port


@pytest.fixture(scope="session")
def ruby_available() -> None:
    problem = probe_ruby()
    if problem is None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the interop suite needs Ruby Sidekiq under CI=true: {problem}", pytrace=False)
    pytest.skip(problem)


@pytest.fixture
def ruby(ruby_available: None, redis_url: str) -> Ruby:
    return Ruby(redis_url)


@pytest.fixture
def sidekiq(ruby_available: None, redis_url: str) -> Iterator[Callable[..., SidekiqProcess]]:
    started: list[SidekiqProcess] = []

    def start(queues: list[str] | None = None, concurrency: int = 5,
              tag: str = "interop") -> SidekiqProcess:
        proc = SidekiqProcess(redis_url, queues or ["rb"], concurrency, tag)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def web_ui(ruby_available: None, redis_url: str) -> Iterator[str]:
    """The Sidekiq 6.4.1 Web UI (Rack + WEBrick) on a free port; yields its base URL."""
    port = free_port()
    log = LOG_DIR / f"web-{port}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(["rackup", "-s", "webrick", "-o", "127.0.0.1", "-p", str(port),
                                 str(RUBY_DIR / "config.ru")], cwd=RUBY_DIR,
                                env=ruby_env(redis_url), stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"rackup exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            return httpx.get(base + "/", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(up, START_TIMEOUT_S, "the Sidekiq Web UI to answer")
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def conveyor(redis_url: str) -> Iterator[Callable[..., ConveyorThread]]:
    started: list[ConveyorThread] = []

    def start(app: App, queues: list[str] | None = None, **options: Any) -> ConveyorThread:
        worker = ConveyorThread(app, queues or ["py"], **options)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def app(redis_url: str) -> Iterator[App]:
    application = fast_app(redis_url)
    yield application
    application.close()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


