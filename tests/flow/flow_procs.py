"""Real worker and scheduler processes of ``flow_app`` for the multi-process flow tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
FAST_ENV = {"CONVEYOR_LEASE_TTL_S": "1.0", "CONVEYOR_HEARTBEAT_INTERVAL_S": "0.2",
            "CONVEYOR_RECOVERER_INTERVAL_S": "0.2", "CONVEYOR_IDLE_BLOCK_S": "0.2",
            "CONVEYOR_SCHEDULER_INTERVAL_S": "0.1", "CONVEYOR_SHUTDOWN_GRACE_S": "2"}
LOG = Path(os.environ.get("TMPDIR", "/tmp")) / f"conveyor-flow-tests-{os.getpid()}.log"
STOP_TIMEOUT_S = 15


# for tests that measure rates rather than recovery: a worker starved of CPU on a loaded machine
# must not lose its lease (and have its jobs run twice) within a second
STEADY_ENV = {"CONVEYOR_LEASE_TTL_S": "10.0"}


def spawn(redis_url: str, *args: str, env: dict[str, str] | None = None
          ) -> subprocess.Popen[bytes]:
    """``python -m conveyor <args>`` on flow_app, output appended to a log for post-mortems."""
    return run_python(redis_url, "-m", "conveyor", *args, env=env)


def run_python(redis_url: str, *args: str, env: dict[str, str] | None = None
               ) -> subprocess.Popen[bytes]:
    """``python <args>`` with the flow tests' environment (fast timers, this folder and
    ``tests/`` importable; ``env`` overrides), output appended to the log."""
    full = {**os.environ, **FAST_ENV, **(env or {}), "CONVEYOR_REDIS_URL": redis_url,
            "LEDGER_REDIS_URL": redis_url,
            "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)])}
    with LOG.open("ab") as log:
        return subprocess.Popen([sys.executable, *args], env=full,
                                stdout=log, stderr=subprocess.STDOUT)


def worker(redis_url: str, concurrency: int = 4, env: dict[str, str] | None = None
           ) -> subprocess.Popen[bytes]:
    return spawn(redis_url, "worker", "--app", "flow_app:app", "-c", str(concurrency), env=env)


def scheduler(redis_url: str, interval_s: float = 0.2) -> subprocess.Popen[bytes]:
    return spawn(redis_url, "cron", "run", "--app", "flow_app:app", "--interval",
                 str(interval_s))


def kill(p: subprocess.Popen[bytes]) -> None:
    p.send_signal(signal.SIGKILL)
    p.wait(STOP_TIMEOUT_S)


@contextmanager
def processes(*procs: subprocess.Popen[bytes]) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Stop every process still alive at the end (TERM, then wait)."""
    alive = list(procs)
    try:
        yield alive
    finally:
        for p in alive:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in alive:
            try:
                p.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                kill(p)


def wait_until(cond: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.02)
