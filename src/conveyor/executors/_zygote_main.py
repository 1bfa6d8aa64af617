"""The zygote's own side: a small single-threaded process that forks executor children on request.

It is forked once from the worker when an executor starts, so it inherits the job functions and
everything loaded before (copy-on-write), but none of the worker's threads: every child it forks
later comes from a one-thread process, which is what makes ``fork`` safe. It never touches the
worker's event loop (whose epoll and signal pipe it shares by inheritance) and leaves with
``os._exit`` so no inherited finaliser runs.

Requests arrive on a ``SOCK_SEQPACKET`` control socket, one JSON message each:
``{"op": "spawn", "id": n, ...}`` with the child's channel (a socket) passed as a file
descriptor, and ``{"op": "kill", "pid": p}``. Replies: ``{"op": "ready"}`` (or ``init_failed``)
once, ``{"op": "spawned", "id", "pid"}`` per fork and ``{"op": "exit", "pid", "status"}`` when the
zygote reaps a child. Only the zygote reaps its children, so a pid it has not reported dead is
still that child's: killing through the zygote cannot hit a recycled pid.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import os
import selectors
import signal
import socket
import sys
import traceback
from collections.abc import Callable, Iterable
from typing import Any

from ..job import dumps, loads
from ._wire import error_to_wire

ChildMain = Callable[[socket.socket, dict[str, Any]], int]

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
CTL_MESSAGE_MAX_BYTES = 64 * 1024
CHILD_CRASH_EXIT_CODE = 70  # EX_SOFTWARE: the child's own machinery failed


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up once in the zygote so that its children inherit it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def die_with_parent(expected_parent: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no orphaned children)."""
    prctl = _prctl()
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != expected_parent:  # the parent died before prctl took effect
        os._exit(0)


def forget_parent_signals() -> None:
    """Default actions for every signal the worker handled; Ctrl-C is left to the worker."""
    signal.set_wakeup_fd(-1)
    for sig in signal.valid_signals():
        with contextlib.suppress(OSError, ValueError, TypeError):
            if callable(signal.getsignal(sig)):
                signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _noop_handler(signum: int, frame: Any) -> None:
    """SIGCHLD only needs to wake the selector through the wakeup pipe."""


def zygote_main(ctl: socket.socket, child_main: ChildMain, close_fds: Iterable[int],
                parent: int, before_serving: Callable[[], Any] | None) -> int:
    for fd in close_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    die_with_parent(parent)
    forget_parent_signals()
    if before_serving is not None:
        try:
            before_serving()
        except BaseException as exc:
            ctl.send(dumps({"op": "init_failed", **error_to_wire(exc)}))
            return 1
    gc.freeze()
    ctl.send(dumps({"op": "ready", "pid": os.getpid()}))
    _ZygoteLoop(ctl, child_main).serve()
    return 0


class _ZygoteLoop:
    def __init__(self, ctl: socket.socket, child_main: ChildMain) -> None:
        self.ctl = ctl
        self.child_main = child_main
        self.live: set[int] = set()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.signal(signal.SIGCHLD, _noop_handler)
        signal.set_wakeup_fd(self.wake_w)
        self.selector = selectors.DefaultSelector()
        self.selector.register(ctl, selectors.EVENT_READ)
        self.selector.register(self.wake_r, selectors.EVENT_READ)

    def serve(self) -> None:
        try:
            while True:
                for key, _ in self.selector.select():
                    if key.fileobj is self.ctl:
                        if not self._on_request():
                            return
                    else:
                        with contextlib.suppress(BlockingIOError):
                            os.read(self.wake_r, 4096)
                        self._reap()
        finally:
            self._kill_all()

    def _on_request(self) -> bool:
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.ctl, CTL_MESSAGE_MAX_BYTES, 4)
        except ConnectionResetError:  # the worker closed its end with our reports unread
            return False
        if not data:
            return False
        request = loads(data)
        op = request.get("op")
        if op == "spawn" and fds:
            self._spawn(request, fds[0])
            fds = fds[1:]
        elif op == "kill" and request.get("pid") in self.live:
            os.kill(request["pid"], signal.SIGKILL)
        for fd in fds:
            os.close(fd)
        return op != "stop"

    def _spawn(self, request: dict[str, Any], fd: int) -> None:
        channel = socket.socket(fileno=fd)
        gc.freeze()  # objects made since the last fork join the never-collected generation
        me = os.getpid()
        pid = os.fork()
        if pid == 0:
            self._become_child(channel, request, me)
        channel.close()
        self.live.add(pid)
        self.ctl.send(dumps({"op": "spawned", "id": request["id"], "pid": pid}))

    def _become_child(self, channel: socket.socket, request: dict[str, Any], zygote: int) -> None:
        code = CHILD_CRASH_EXIT_CODE
        try:
            self.selector.close()
            self.ctl.close()
            os.close(self.wake_r)
            os.close(self.wake_w)
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            die_with_parent(zygote)
            code = self.child_main(channel, request)
        except BaseException:
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.live.discard(pid)
            with contextlib.suppress(OSError):
                self.ctl.send(dumps({"op": "exit", "pid": pid, "status": status}))

    def _kill_all(self) -> None:
        for pid in list(self.live):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in list(self.live):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
