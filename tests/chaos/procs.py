"""Worker processes under test, and the signals the scenarios send them.

A :class:`WorkerProc` is ``python -m conveyor worker --app chaos.chaos_app:app`` as a child of
the test, with its own log file. Every signal goes to the pid this object started, never by
name; ``close()`` stops it (TERM, then KILL after a grace) and reaps it. A :class:`Fleet` keeps
N labelled workers and restarts the ones a scenario killed.

A worker given ``sidecar_command`` launches and supervises that HTTP sidecar itself (its http
executor does; the test never starts it), so the sidecar is a child of the worker, found by
``children()``, and its fate when the worker is SIGKILLed is what scenario 3 measures.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import psutil

TESTS_DIR = Path(__file__).resolve().parent.parent
CLOSE_GRACE_S = 20.0
POLL_S = 0.02

# The Python sidecar serving the chaos app's jobs, with its shipping options (``--graceful`` 30 s).
SIDECAR_COMMAND = shlex.join([sys.executable, "-m", "conveyor.sidecar", "--app",
                              "chaos.chaos_app:app", "--port", "{port}"])

# Short leases so recovery is observable in seconds (what BullMQ's tests do with 1 s locks).
FAST_ENV: dict[str, str] = {
    "CONVEYOR_LEASE_TTL_S": "1.5",
    "CONVEYOR_HEARTBEAT_INTERVAL_S": "0.3",
    "CONVEYOR_RECOVERER_INTERVAL_S": "0.3",
    "CONVEYOR_SCHEDULER_INTERVAL_S": "0.2",
    "CONVEYOR_IDLE_BLOCK_S": "0.3",
    "CONVEYOR_SHUTDOWN_GRACE_S": "3",
}


def wait_until(cond: Callable[[], object], timeout_s: float, what: str,
               poll_s: float = POLL_S) -> None:
    """Poll ``cond`` until it is truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(poll_s)


class WorkerProc:
    """One worker process; ``signal()`` and ``close()`` only ever touch its own pid."""

    def __init__(self, label: str, redis_url: str, ledger_url: str, log_dir: Path, *,
                 concurrency: int = 4, queues: tuple[str, ...] = ("default",),
                 env: Mapping[str, str] | None = None, prefix: tuple[str, ...] = (),
                 sidecar_command: str | None = None) -> None:
        self.label = label
        self.log_path = log_dir / f"worker-{label}.log"
        extra = dict(env or {})
        path = [str(TESTS_DIR), extra.pop("PYTHONPATH", ""), os.environ.get("PYTHONPATH", "")]
        full_env = {**os.environ, **extra, "CONVEYOR_REDIS_URL": redis_url,
                    "CHAOS_LEDGER_URL": ledger_url, "CHAOS_LABEL": label,
                    "PYTHONPATH": os.pathsep.join(p for p in path if p)}
        args = [sys.executable, *prefix, "-m", "conveyor", "worker", "--app",
                "chaos.chaos_app:app", "-c", str(concurrency)]
        for q in queues:
            args += ["-q", q]
        if sidecar_command:
            args += ["--sidecar-command", sidecar_command]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid
        self.started_at = time.monotonic()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.alive:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would; reaped at once."""
        self.signal(signal.SIGKILL)
        self.proc.wait(CLOSE_GRACE_S)

    def children(self) -> list[psutil.Process]:
        """Executor children (process pools, fork zygotes and their forks, a supervised
        sidecar) of this worker."""
        with contextlib.suppress(psutil.Error):
            return psutil.Process(self.pid).children(recursive=True)
        return []

    def rss_kb(self) -> int:
        return int(psutil.Process(self.pid).memory_info().rss // 1024)

    def begin_close(self) -> None:
        """CONT (in case it was stopped), then TERM: a graceful stop begins."""
        if self.alive:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)

    def close(self, grace_s: float = CLOSE_GRACE_S) -> int | None:
        """:meth:`begin_close` unless done, wait, then KILL past ``grace_s``; reap."""
        if self.alive:
            self.begin_close()
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Fleet:
    """N labelled workers; ``restart_dead()`` replaces the ones that exited."""

    def __init__(self, n: int, make: Callable[[str], WorkerProc]) -> None:
        self.make = make
        self.serial = 0
        self.all: list[WorkerProc] = []
        self.slots: list[WorkerProc] = [self._new() for _ in range(n)]

    def _new(self) -> WorkerProc:
        self.serial += 1
        w = self.make(f"w{self.serial}")
        self.all.append(w)
        return w

    def restart_dead(self) -> int:
        restarted = 0
        for i, w in enumerate(self.slots):
            if not w.alive:
                self.slots[i] = self._new()
                restarted += 1
        return restarted

    def close(self) -> list[int | None]:
        for w in self.all:
            w.begin_close()
        return [w.close() for w in self.all]

    def logs(self) -> str:
        return "\n".join(f"--- {w.label} (pid {w.pid})\n{w.log_tail()}" for w in self.all)
