"""Helpers of the interop suite (the fixtures in ``conftest.py`` build on them).

* :class:`Ruby` runs one client command of ``ruby/driver.rb`` against a Redis and returns its
  JSON result (Sidekiq::Client, perform_*, ActiveJob, the API sets, ProcessSet...).
* :class:`SidekiqProcess` is a real ``sidekiq`` server process with the app in ``ruby/app.rb``.
* :class:`ConveyorThread` runs a Conveyor worker in a thread of the test process.
* :func:`conveyor_cli` runs the ``conveyor`` command line in a subprocess, as a user does.
* :func:`wait_until` waits on a condition (never a fixed sleep).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from conveyor import App
from conveyor.settings import Settings
from conveyor.worker import QueueSpec, Worker

RUBY_DIR = Path(__file__).parent / "ruby"
SIDEKIQ_VERSION = "6.4.1"
COMMAND_TIMEOUT_S = 60.0
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
POLL_S = 0.02
FAST = dict(lease_ttl_s=2.0, heartbeat_interval_s=0.25, recoverer_interval_s=0.25,
            scheduler_interval_s=0.2, idle_block_s=0.2, shutdown_grace_s=3.0, status_ttl_s=600)
LOG_DIR = Path(os.environ.get("TMPDIR", "/tmp")) / f"conveyor-interop-{os.getpid()}"


def wait_until(cond: Callable[[], Any], timeout_s: float = 15.0, what: str = "") -> Any:
    """Poll ``cond`` until it returns something truthy, and return that; fail after the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or cond}")
        time.sleep(POLL_S)


def probe_ruby() -> str | None:
    """None when Ruby, Sidekiq 6.4.1, ActiveJob and the Web UI load; else what is missing."""
    missing = [b for b in ("ruby", "sidekiq", "rackup") if shutil.which(b) is None]
    if missing:
        return f"missing commands: {', '.join(missing)} (install: bash scripts/system-deps.sh)"
    code = ('require "sidekiq"; require "sidekiq/web"; require "active_job"; require "webrick"; '
            'require "global_id"; print Sidekiq::VERSION')
    out = subprocess.run(["ruby", "-e", code], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        return f"Ruby cannot load Sidekiq/ActiveJob/WEBrick: {out.stderr.strip()[-300:]}"
    if out.stdout.strip() != SIDEKIQ_VERSION:
        found = out.stdout.strip()
        return f"Sidekiq {found} installed; this suite is written for {SIDEKIQ_VERSION}"
    return None


def ruby_env(redis_url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": redis_url, "INTEROP_POLL_S": "0.5", **extra}


class Ruby:
    """Runs ``ruby/driver.rb`` commands against one Redis."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url

    def __call__(self, command: str, params: Any = None) -> Any:
        out = subprocess.run(["ruby", str(RUBY_DIR / "driver.rb"), command],
                             input=json.dumps(params), capture_output=True, text=True,
                             env=ruby_env(self.redis_url), timeout=COMMAND_TIMEOUT_S)
        if out.returncode != 0:
            raise AssertionError(f"ruby driver {command} failed:\n{out.stderr[-2000:]}")
        # split on "\n" only: U+2028 in a result is not a line break here
        return json.loads(out.stdout.strip().split("\n")[-1])["result"]


class SidekiqProcess:
    """A real ``sidekiq`` server process; ``identity`` is its key in ``processes``."""

    def __init__(self, redis_url: str, queues: list[str], concurrency: int, tag: str) -> None:
        self.log = LOG_DIR / f"sidekiq-{tag}-{time.monotonic_ns()}.log"
        args = ["sidekiq", "-r", str(RUBY_DIR / "app.rb"), "-c", str(concurrency), "-t", "3",
                "-g", tag]
        for q in queues:
            args += ["-q", q]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(args, cwd=RUBY_DIR, env=ruby_env(redis_url),
                                         stdout=out, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        r = redis.Redis.from_url(redis_url)
        try:
            self.identity = wait_until(lambda: self._find_identity(r), START_TIMEOUT_S,
                                       f"sidekiq pid {self.pid} to heartbeat (log: {self.log})")
        except AssertionError:
            self.kill()
            raise
        finally:
            r.close()

    def _find_identity(self, r: redis.Redis) -> str | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"sidekiq exited with {self.proc.returncode}:\n{self.tail()}")
        for ident in r.smembers("processes"):
            info = r.hget(ident, "info")
            if info and json.loads(info).get("pid") == self.pid:
                return ident.decode() if isinstance(ident, bytes) else str(ident)
        return None

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT_S)


class ConveyorThread:
    """A Conveyor worker running in its own thread and event loop, stopped gracefully."""

    def __init__(self, app: App, queues: list[str], **options: Any) -> None:
        self.worker = Worker(app, [QueueSpec(q) for q in queues], **options)
        self.loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="conveyor-worker", daemon=True)
        self.thread.start()
        wait_until(lambda: hasattr(self.worker, "heartbeat") or not self.thread.is_alive(),
                   START_TIMEOUT_S, "the Conveyor worker to start")
        if self.error is not None:
            raise self.error

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.worker.run(self._stop))
        except BaseException as exc:  # reported by stop() in the test's thread
            self.error = exc
        finally:
            self.loop.close()

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        if self.thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop may have just closed
                self.loop.call_soon_threadsafe(self._stop.set)
            self.thread.join(STOP_TIMEOUT_S)
        if self.error is not None:
            raise self.error


def conveyor_cli(redis_url: str, *args: str, stdin: str | None = None,
                 expect_rc: int = 0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m conveyor ARGS`` against ``redis_url`` and check its exit code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(CONVEYOR_REDIS_URL=redis_url, COLUMNS="200")
    proc = subprocess.run([sys.executable, "-m", "conveyor", *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    assert proc.returncode == expect_rc, f"conveyor {' '.join(args)}: {proc.stderr}{proc.stdout}"
    return proc


def fast_app(redis_url: str, **overrides: Any) -> App:
    """An app whose worker beats, polls and recovers in fractions of a second."""
    return App(settings=Settings(redis_url=redis_url, **{**FAST, **overrides}))


class Recorder:
    """Thread-safe list of what Python handlers received."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._lock = threading.Lock()

    def add(self, item: Any) -> None:
        with self._lock:
            self.items.append(item)

    def wait(self, n: int, timeout_s: float = 20.0) -> list[Any]:
        wait_until(lambda: len(self.items) >= n, timeout_s, f"{n} handler call(s)")
        with self._lock:
            return list(self.items)


def ran_in_ruby(r: redis.Redis, n: int, timeout_s: float = 20.0) -> list[dict[str, Any]]:
    """Wait until Ruby jobs recorded ``n`` runs in ``interop:ran`` and return them."""
    wait_until(lambda: r.llen("interop:ran") >= n, timeout_s, f"{n} Ruby job run(s)")
    return [json.loads(x) for x in r.lrange("interop:ran", 0, -1)]


# Corner cases of the wire encoding: astral-plane unicode, line/paragraph separators, control
# characters, floats at the edges of double precision, integers past 64 bits, null, nesting.
CORNER_ARGS: list[Any] = [
    "plain",
    "ünïcödé ✓ 中文 😀 \u2028\u2029 \u0000\u001f tab\t quote\" backslash\\ slash/",
    0.1, 1e20, -0.0, 5e-324, 1.7976931348623157e308, 123456789.12345679, 1.5e-7,
    2**63, 2**64 + 1, -(2**70), 0, -1,
    None, True, False,
    {"nested": {"deeper": [1, {"k": None, "ü": "😀"}], "empty": {}}, "list": []},
    [],
]


def same_values(a: Any, b: Any) -> bool:
    """Deep equality that also tells -0.0 from 0.0 and bool from int."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_values(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_values(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
