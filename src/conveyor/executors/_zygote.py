"""The worker's side of a zygote: fork it once, then ask it for children and hear of their deaths.

The process and fork executors both get their children here. :meth:`Zygote.start` forks the
zygote from the calling process (call it before the worker starts threads: a fork copies only
the forking thread, and a lock held by another thread at that moment stays locked forever in the
copy). Every later child is forked by the single-threaded zygote, never by the worker.

Each child talks to the worker over its own Unix socket (the *channel*) carrying length-prefixed
JSON frames. The worker learns that a child died from the end of its channel, and how it died
from the zygote's ``exit`` report. File descriptors made here are listed in
``PARENT_ONLY_FDS`` so that a zygote forked later (a second executor) closes its copies at once:
a stray copy of a channel would hide the end-of-stream that tells the worker a child died.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import sys
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError, WorkerLost
from ..job import dumps, loads
from ._zygote_main import CTL_MESSAGE_MAX_BYTES, ChildMain, zygote_main

PARENT_ONLY_FDS: set[int] = set()
EXIT_REPORT_WAIT_S = 5.0  # how long to wait for the zygote to report a dead child's status
ZYGOTE_STOP_WAIT_S = 5.0  # how long a stopping zygote gets before SIGKILL


@dataclass(eq=False)
class Child:
    """A child process as the worker sees it: its pid, its channel and its coming exit status."""

    pid: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    exited: asyncio.Future[int | None]
    fd: int
    busy: bool = False
    cancelled: bool = False

    async def exit_status(self) -> int | None:
        """The raw wait status once the zygote reports it (None if it never does)."""
        try:
            return await asyncio.wait_for(asyncio.shield(self.exited), EXIT_REPORT_WAIT_S)
        except TimeoutError:
            return None

    def close(self) -> None:
        PARENT_ONLY_FDS.discard(self.fd)
        self.writer.close()


class Zygote:
    """Forks the zygote at :meth:`start`; :meth:`spawn` gets a new child from it."""

    def __init__(self, child_main: ChildMain, *, before_serving: Callable[[], Any] | None = None,
                 name: str = "executor") -> None:
        self.child_main = child_main
        self.before_serving = before_serving
        self.name = name
        self.pid = 0
        self.alive = False
        self._ids = itertools.count(1)
        self._spawning: dict[int, asyncio.Future[tuple[int, asyncio.Future[int | None]]]] = {}
        self._exits: dict[int, asyncio.Future[int | None]] = {}
        self._pending_sends: set[asyncio.Future[None]] = set()
        self._revive_lock = asyncio.Lock()

    async def start(self) -> None:
        """Fork the zygote and wait until it is ready (its ``before_serving`` hook has run)."""
        self._loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        close_in_zygote = set(PARENT_ONLY_FDS) | {ours.fileno()}
        parent = os.getpid()
        with warnings.catch_warnings():  # 3.12+ warns when forking with threads; see docstring
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = zygote_main(theirs, self.child_main, close_in_zygote, parent,
                                   self.before_serving)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        theirs.close()
        self.pid, self._ctl, self.alive = pid, ours, True
        PARENT_ONLY_FDS.add(ours.fileno())
        ours.setblocking(False)
        self._ready: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self._reaped = asyncio.Event()
        self._loop.add_reader(ours.fileno(), self._on_readable)
        self._watch_exit()
        first = await self._ready
        if first.get("op") != "ready":
            await self.stop()
            detail = f"{first.get('error_class')}: {first.get('message')}"
            if first.get("op") == "init_failed":
                raise ConfigurationError(f"the {self.name} executor's init hook failed: {detail}")
            raise ConfigurationError(f"the {self.name} executor's zygote did not start: {detail}")

    async def spawn(self, request: dict[str, Any], first_frame: bytes = b"") -> Child:
        """A new child; ``first_frame`` is already queued on its channel when it starts."""
        if not self.alive:
            raise WorkerLost(f"the {self.name} executor's zygote process {self.pid} is gone")
        ours, theirs = socket.socketpair()
        PARENT_ONLY_FDS.update((ours.fileno(), theirs.fileno()))
        try:
            reader, writer = await asyncio.open_unix_connection(sock=ours)
        except BaseException:  # cancelled (say, by stop()) before the channel existed
            PARENT_ONLY_FDS.difference_update((ours.fileno(), theirs.fileno()))
            ours.close()
            theirs.close()
            raise
        if first_frame:
            writer.write(first_frame)
        sid = next(self._ids)
        waiter = self._loop.create_future()
        self._spawning[sid] = waiter
        try:
            try:
                await self._send(dumps({"op": "spawn", "id": sid, **request}), [theirs.fileno()])
            finally:
                PARENT_ONLY_FDS.discard(theirs.fileno())
                theirs.close()
            pid, exited = await waiter
        except BaseException:
            self._spawning.pop(sid, None)
            PARENT_ONLY_FDS.discard(ours.fileno())
            writer.close()
            raise
        return Child(pid, reader, writer, exited, ours.fileno())

    async def revive(self) -> bool:
        """Fork a new zygote if this one died (say, SIGKILLed from outside); True if it did.

        The new zygote is forked from the worker as it is now, threads and all, so this is a
        recovery path rather than the normal one.
        """
        async with self._revive_lock:
            if self.alive:
                return False
            await self.stop()
            await self.start()
            return True

    def kill(self, pid: int) -> None:
        """SIGKILL a child, through the zygote (which alone knows the pid is still that child)."""
        if self.alive:
            self._send_soon(dumps({"op": "kill", "pid": pid}))

    async def stop(self) -> None:
        """Close the control socket: the zygote kills its remaining children and exits."""
        if self.pid == 0:
            return
        if self.alive:
            self._on_lost()
        try:
            await asyncio.wait_for(self._reaped.wait(), ZYGOTE_STOP_WAIT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            await self._reaped.wait()

    # --- control socket ---------------------------------------------------------------------
    def _on_readable(self) -> None:
        while self.alive:
            try:
                data = self._ctl.recv(CTL_MESSAGE_MAX_BYTES)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._on_lost()
                return
            self._dispatch(loads(data))

    def _dispatch(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "spawned":
            pid = int(msg["pid"])
            exited: asyncio.Future[int | None] = self._loop.create_future()
            self._exits[pid] = exited
            waiter = self._spawning.pop(int(msg["id"]), None)
            if waiter is None or waiter.done():  # its spawn() was cancelled: nobody wants it
                self.kill(pid)
            else:
                waiter.set_result((pid, exited))
        elif op == "exit":
            done = self._exits.pop(int(msg["pid"]), None)
            if done is not None and not done.done():
                done.set_result(int(msg["status"]))
        elif op in ("ready", "init_failed") and not self._ready.done():
            self._ready.set_result(msg)

    def _on_lost(self) -> None:
        """The control socket closed (we stop, or the zygote died): fail whatever waits on it."""
        self.alive = False
        self._loop.remove_reader(self._ctl.fileno())
        PARENT_ONLY_FDS.discard(self._ctl.fileno())
        self._ctl.close()
        gone = WorkerLost(f"the {self.name} executor's zygote process {self.pid} is gone")
        for waiter in self._spawning.values():
            if not waiter.done():
                waiter.set_exception(gone)
        self._spawning.clear()
        for exited in self._exits.values():
            if not exited.done():
                exited.set_result(None)
        self._exits.clear()
        if not self._ready.done():
            self._ready.set_result({"op": "lost", "error_class": "WorkerLost",
                                    "message": str(gone)})

    def _watch_exit(self) -> None:
        """Reap the zygote when it exits: a pidfd on Linux, a waiting thread elsewhere."""
        if hasattr(os, "pidfd_open"):
            pidfd = os.pidfd_open(self.pid)

            def reap() -> None:
                self._loop.remove_reader(pidfd)
                os.close(pidfd)
                os.waitpid(self.pid, 0)
                if self.alive:
                    self._on_lost()
                self._reaped.set()

            self._loop.add_reader(pidfd, reap)
            return

        async def wait_thread() -> None:  # pragma: no cover - non-Linux fallback
            await asyncio.to_thread(os.waitpid, self.pid, 0)
            if self.alive:
                self._on_lost()
            self._reaped.set()

        self._keep(asyncio.ensure_future(wait_thread()))

    async def _send(self, data: bytes, fds: list[int]) -> None:
        while True:
            if not self.alive:
                raise WorkerLost(f"the {self.name} executor's zygote process {self.pid} is gone")
            try:
                socket.send_fds(self._ctl, [data], fds)
                return
            except BlockingIOError:
                writable = self._loop.create_future()
                self._loop.add_writer(self._ctl.fileno(), writable.set_result, None)
                try:
                    await writable
                finally:
                    self._loop.remove_writer(self._ctl.fileno())

    def _send_soon(self, data: bytes) -> None:
        try:
            self._ctl.send(data)
        except BlockingIOError:
            self._keep(asyncio.ensure_future(self._send(data, [])))
        except OSError as exc:
            print(f"conveyor: cannot reach the zygote: {exc}", file=sys.stderr)

    def _keep(self, task: asyncio.Future[None]) -> None:
        self._pending_sends.add(task)
        task.add_done_callback(self._pending_sends.discard)

