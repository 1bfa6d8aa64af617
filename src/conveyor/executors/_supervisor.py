"""Launch a sidecar from a command line, wait for its health endpoint, restart it when it dies.

The sidecar runs in its own session (Ctrl-C on the worker's terminal does not reach it; the
worker stops it) with ``CONVEYOR_SIDECAR_WATCH_STDIN=1`` and a pipe on its standard input: the
protocol asks a supervised sidecar to exit when that pipe closes, so a worker killed with
SIGKILL does not leave its sidecar holding the port. ``{port}`` in the command is replaced by
the port the executor talks to.

When the process exits the supervisor calls ``on_down`` (calls in flight fail on their own:
their connections drop), starts it again after a pause that doubles up to
``RESTART_BACKOFF_CAP_S`` while it keeps failing, and calls ``on_up`` once it answers its
health check again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from ..errors import ConfigurationError

log = logging.getLogger("conveyor.executors.http")
HEALTH_POLL_S = 0.05  # how often a starting sidecar's health endpoint is tried
RESTART_BACKOFF_S = 0.2
RESTART_BACKOFF_CAP_S = 10.0
STOP_GRACE_S = 10.0  # SIGTERM, then SIGKILL after this long


class SidecarSupervisor:
    """One supervised sidecar process."""

    def __init__(self, command: Sequence[str], health_url: str,
                 probe: Callable[[], Awaitable[bool]], *,
                 env: Mapping[str, str] | None = None, cwd: str | None = None,
                 startup_timeout_s: float = 30.0, on_up: Callable[[], None] = lambda: None,
                 on_down: Callable[[], None] = lambda: None) -> None:
        self.command = list(command)
        self.health_url = health_url
        self.probe = probe
        self.env = {**os.environ, **(env or {}), "CONVEYOR_SIDECAR_WATCH_STDIN": "1"}
        self.cwd = cwd
        self.startup_timeout_s = startup_timeout_s
        self.on_up = on_up
        self.on_down = on_down
        self.restarts = 0
        self.healthy = False
        self._proc: asyncio.subprocess.Process | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def start(self) -> None:
        """Launch the sidecar and wait until it is healthy; ConfigurationError if it never is."""
        await self._launch()
        self._monitor = asyncio.create_task(self._watch(), name="sidecar-supervisor")

    async def _launch(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            *self.command, env=self.env, cwd=self.cwd, stdin=asyncio.subprocess.PIPE,
            start_new_session=True)
        try:
            await self._wait_healthy(self._proc)
        except ConfigurationError:
            await self._terminate(self._proc, 0)
            raise
        self.healthy = True
        self.on_up()

    async def _wait_healthy(self, proc: asyncio.subprocess.Process) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise ConfigurationError(
                    f"sidecar command {self.command!r} exited with code {proc.returncode} "
                    f"before answering {self.health_url}")
            if await self.probe():
                return
            await asyncio.sleep(HEALTH_POLL_S)
        raise ConfigurationError(
            f"sidecar command {self.command!r} did not answer {self.health_url} within "
            f"{self.startup_timeout_s}s")

    async def _watch(self) -> None:
        pause = RESTART_BACKOFF_S
        while not self._stopping:
            assert self._proc is not None
            code = await self._proc.wait()
            if self._stopping:
                return
            self.healthy = False
            self.on_down()
            log.warning("sidecar %s (pid %s) exited with code %s; restarting it",
                        self.command[0], self._proc.pid, code)
            while not self._stopping:
                self.restarts += 1
                try:
                    await self._launch()
                    pause = RESTART_BACKOFF_S
                    break
                except ConfigurationError as exc:
                    log.warning("sidecar restart failed (again in %.1fs): %s", pause, exc)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, RESTART_BACKOFF_CAP_S)

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM the sidecar (it finishes what it runs), SIGKILL it after ``grace_s``."""
        self._stopping = True
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        if self._proc is not None:
            await self._terminate(self._proc, grace_s)

    async def _terminate(self, proc: asyncio.subprocess.Process, grace_s: float) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            if grace_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), grace_s)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
