"""A real Redis server for tests: its own free port on 127.0.0.1 and its own data folder.

The server is a child of the test process (no daemonizing), so ``stop()`` and ``kill()`` signal
exactly the pid it started and reap it. ``restart()`` keeps the data folder and the port, so
clients reconnect to the same URL and, with ``appendonly=True``, find the data they wrote: that
is what chaos tests need.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from conveyor.embedded import find_server_binary
from conveyor.errors import ConfigurationError

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.02
PING_TIMEOUT_S = 1.0
LOG_TAIL_LINES = 20
PORT_ATTEMPTS = 3
HOST = "127.0.0.1"


def require_server_binary() -> Path:
    """Return the server binary, or fail the test under ``CI=true`` and skip it elsewhere.

    Redis-dependent tests must not pass in CI by skipping, but a developer without any server
    binary should still be able to run the rest of the suite.
    """
    try:
        return find_server_binary()
    except ConfigurationError as exc:
        reason = str(exc)
    if os.environ.get("CI") == "true":
        pytest.fail(f"a Redis server is required under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis/valkey server process for tests; a context manager that cleans up after itself.

    With no ``data_dir`` a temporary folder is made and removed by ``close()``; a folder that was
    passed in is left in place. Persistence is off (``save ""``) unless ``appendonly`` is true.
    """

    def __init__(
        self,
        binary: Path | None = None,
        data_dir: Path | None = None,
        *,
        appendonly: bool = False,
        appendfsync: str = "everysec",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.binary = binary or find_server_binary()
        self.extra_args = list(extra_args)  # more server options, e.g. ("--rename-command", ...)
        self._owns_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="conveyor-test-redis-"))
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._started = False

    @property
    def url(self) -> str:
        """The ``redis://`` URL of the server (stable across restarts)."""
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The pid of the running server, or None when stopped."""
        return self._process.pid if self._process else None

    def client(self) -> redis.Redis:
        """A new client on the server, without retries (close it when done)."""
        return redis.Redis(
            host=HOST,
            port=self.port,
            socket_timeout=PING_TIMEOUT_S,
            socket_connect_timeout=PING_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )

    def start(self) -> None:
        """Start the server and wait until it answers PING.

        On the first start another process may take the free port before the server binds it;
        then a new port is tried. Later starts keep the port, so the URL stays the same.
        """
        if self._process is not None:
            raise RuntimeError(f"redis server already running as pid {self._process.pid}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self._started else PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            if self._spawn_and_wait():
                self._started = True
                return
            if attempt < attempts:
                self.port = free_port()
        raise RuntimeError(
            f"{self.binary} did not come up on port {self.port}; log:\n{self.log_tail()}"
        )

    def _spawn_and_wait(self) -> bool:
        log = self.data_dir / "redis.log"
        args = [
            str(self.binary), "--port", str(self.port), "--bind", HOST, "--dir", str(self.data_dir),
            "--save", "", "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync, "--daemonize", "no", "--logfile", str(log),
            *self.extra_args,
        ]  # fmt: skip
        with open(log, "ab") as out:
            self._process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=self.data_dir
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._ping():
            if self._process.poll() is not None or time.monotonic() >= deadline:
                self.stop()
                return False
            time.sleep(POLL_INTERVAL_S)
        return True

    def stop(self) -> None:
        """Stop the server with SIGTERM (it flushes its AOF), SIGKILL if it hangs; reap it."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would; reap it."""
        self._signal(signal.SIGKILL)

    def restart(self) -> None:
        """Stop the server and start it again on the same port and data folder."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove the data folder if this object made it."""
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def log_tail(self) -> str:
        """The last lines of the server's log."""
        try:
            lines = (self.data_dir / "redis.log").read_text(errors="replace").splitlines()
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(lines[-LOG_TAIL_LINES:])

    def _signal(self, signum: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signum)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _ping(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def __enter__(self) -> RedisServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
