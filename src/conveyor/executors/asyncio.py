"""Run coroutine jobs on the orchestrator's event loop: thousands in flight in one process.

A job runs inside the caller's task (no task of its own: at 10,000 jobs in flight a task per job
is a measurable share of the CPU), under ``asyncio.timeout`` for its timeout. ``cancel(key)``
cancels the caller's task, and the ``CancelledError`` that comes out of the job is turned back
into a ``Cancelled`` outcome (the task is uncancelled), so ``run`` still never raises for what
the job did. A plain function registered here is called on the loop too, so it must be quick;
blocking work belongs in the ``thread`` executor.

A job that *blocks* the loop (a CPU loop, a ``time.sleep``) stops every timer on it, its own
timeout included. The worker renews its lease from its own thread (``worker/heartbeat.py``), and
this module adds a **watchdog** thread, one per process, that watches every loop an asyncio
executor runs on:

* the loop stamps a tick every ``LOOP_TICK_S``; a tick older than ``STALL_S`` means the loop is
  blocked, and the watchdog then reads the loop thread's stack (``sys._current_frames()``);
* blocked longer than ``blocked_warning_s``: one warning with that stack, naming the job(s) on
  it (or saying it is no job);
* a job on that stack that is past its deadline is **interrupted**: the exception ``_Interrupt``
  (a ``BaseException``, so the job's own ``except Exception`` cannot swallow it) is raised in the
  job's code, and the job fails with ``JobTimeout`` like any timed-out job.

Safety of the interrupt. An exception raised into a thread from outside lands wherever that
thread is when it next checks for pending work, which could be after the job's frame has
already returned (inside the loop, or another job). So the decision is made *in the loop
thread*, at the moment the exception is raised:

* a loop on the **main thread** (the worker, ``conveyor sidecar``): the watchdog sends the main
  thread a signal (``INTERRUPT_SIGNAL``); CPython runs its handler in the main thread between two
  bytecodes, with the frame that was running. The handler walks that frame's stack and raises
  only if a job frame past its deadline is on it; otherwise it does nothing. The signal also
  ends a ``time.sleep`` (and other calls that return on EINTR) in the job early.
* a loop on **another thread**: signals cannot target it, so the watchdog uses
  ``PyThreadState_SetAsyncExc``, checks the stack while holding the GIL, and injects only when
  the thread's innermost frame is below the job's frame and is not in the middle of a call (a
  call into C may have released the GIL, and the exception would be raised only after it
  returns, maybe outside the job). It re-checks right after injecting and withdraws the
  exception if the thread moved. A C call that never returns is never interrupted here.

What cannot be interrupted, on either path: a C call that holds the GIL (a long regex, hashing,
a C extension's loop) or ignores EINTR finishes first, and the job fails when it returns to
Python code. The module keeps the watchdog in this file because it only knows this executor's
frames (``_guarded``).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import ctypes
import dis
import inspect
import logging
import signal
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import JobTimeout
from .base import Executor, Outcome, Task, cancelled_outcome, format_backtrace

log = logging.getLogger("conveyor.executors.asyncio")

current_task_context: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "conveyor_task_context", default=None
)

LOOP_TICK_S = 0.05  # the loop stamps the time this often
STALL_S = 0.25  # no stamp for this long: the loop is blocked
WATCHDOG_INTERVAL_S = 0.1  # how often the watchdog thread looks at the loops
BLOCKED_WARNING_S = 1.0  # default: warn when the loop is blocked this long
INTERRUPT_REPEAT_S = 1.0  # a job that swallowed its interrupt gets another one this much later
INJECT_TRIES = 20  # looks for a safe moment per watchdog round (a loop on another thread)
INJECT_RETRY_S = 0.002
MAX_STACK_FRAMES = 40  # frames of the blocking stack shown in the warning
INTERRUPT_SIGNAL = getattr(signal, "SIGRTMIN", signal.SIGUSR2) + (
    7 if hasattr(signal, "SIGRTMIN") else 0)
_CALL_OPCODES = frozenset(op for name, op in dis.opmap.items()
                          if name.startswith(("CALL", "PRECALL")))


class _Interrupt(BaseException):
    """Raised inside a job that blocks the loop past its deadline; ``target`` is ``id()`` of the
    job's Task, so an inner job run inline by an overdue one lets it pass to its own ``_call``.
    (A subclass is made per interrupt: ``PyThreadState_SetAsyncExc`` takes a class.)"""

    target = 0


def _interrupt_for(task: Task) -> type[_Interrupt]:
    return type("_Interrupt", (_Interrupt,), {"target": id(task)})


class _Expired(Exception):
    """The job's ``asyncio.timeout`` expired (told apart from a TimeoutError of the job's)."""


class AsyncioExecutor(Executor):
    """Coroutines on the running loop, at most ``capacity`` at once.

    ``blocked_warning_s``: log a warning with the loop's stack when it is blocked this long
    (None: never).
    """

    kind = "asyncio"

    def __init__(self, functions: Mapping[str, Callable[..., Any]], capacity: int = 1000, *,
                 blocked_warning_s: float | None = BLOCKED_WARNING_S) -> None:
        super().__init__(functions, capacity)
        self.blocked_warning_s = blocked_warning_s
        self._free = capacity  # slots left; at 0, callers queue on _waiting (FIFO)
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._running: dict[str, asyncio.Task[Any]] = {}  # key -> the task the job runs in
        self._cancel_requested: set[str] = set()
        self._watch: _LoopWatch | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._watch = WATCHDOG.watch(self._loop, self.blocked_warning_s)

    async def run(self, task: Task) -> Outcome:
        if self._watch is None:
            await self.start()
        # A counter instead of an asyncio.Semaphore: a free slot costs no call (3.11's
        # Semaphore builds a generator per acquire to look for cancelled waiters).
        if self._free > 0 and not self._waiting:
            self._free -= 1
        else:
            await self._wait_for_slot()
        self._stats.in_flight += 1
        try:  # one coroutine for the slot and the call: a frame less per job
            started = time.monotonic()
            queued = started - task.submitted
            key = task.key
            fn = self.functions.get(task.name)
            if fn is None or (key and key in self._cancel_requested):
                return self._record(self._refused(task, started, queued))
            # given the loop, current_task skips get_running_loop (a getpid call on 3.11)
            me = asyncio.current_task(self._loop)
            if key and me is not None:
                self._running[key] = me
            token = current_task_context.set(task.context)
            try:
                if task.timeout:
                    value = await self._with_timeout(fn, task, started)
                else:
                    value = await _guarded(fn, task, None)
            except BaseException as exc:
                outcome = self._failure(exc, task, me, started, queued)
                if outcome is None:
                    raise
                return self._record(outcome)
            finally:
                current_task_context.reset(token)
                if key:
                    self._running.pop(key, None)
            if key and key in self._cancel_requested:  # the job swallowed its cancellation
                self._cancel_requested.discard(key)
                if me is not None and me.cancelling():
                    me.uncancel()
            self._stats.completed += 1  # _record's success case
            self._stats.queued_s_total += queued
            return Outcome.success(value, time.monotonic() - started, queued)
        finally:
            self._stats.in_flight -= 1
            self._free += 1
            if self._waiting:
                self._wake_one()

    def _refused(self, task: Task, started: float, queued: float) -> Outcome:
        """A task cancelled before it started, or one whose function is not registered."""
        if task.key in self._cancel_requested:
            self._cancel_requested.discard(task.key)
            return cancelled_outcome(started, queued)
        try:
            self.lookup(task.name)  # raises UnknownJobType, naming what is registered
        except Exception as exc:
            return Outcome.failure(exc, 0.0, queued)
        raise AssertionError("refused a task that can run")

    async def _wait_for_slot(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed a slot, then cancelled
                self._free += 1
                self._wake_one()
            raise

    def _wake_one(self) -> None:
        """Hand a free slot to the first waiter still waiting (it takes the slot as it wakes)."""
        while self._waiting and self._free > 0:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._free -= 1
                return

    async def _with_timeout(self, fn: Callable[..., Any], task: Task, started: float) -> Any:
        assert task.timeout
        timer = asyncio.timeout(task.timeout)
        try:
            async with timer:
                return await _guarded(fn, task, started + task.timeout)
        except TimeoutError:
            if timer.expired():  # ours, not a TimeoutError of the job's own
                raise _Expired() from None
            raise

    def _failure(self, exc: BaseException, task: Task, me: asyncio.Task[Any] | None,
                 started: float, queued: float) -> Outcome | None:
        """The outcome for what came out of a job, or None to let it propagate."""
        duration = time.monotonic() - started
        if isinstance(exc, _Expired):
            error = JobTimeout(f"job {task.name!r} ran past its timeout of {task.timeout}s")
            return Outcome.failure(error, duration, queued, [])
        if isinstance(exc, _Interrupt):
            if exc.target != id(task):
                return None  # meant for an enclosing job (one job running another inline)
            error = JobTimeout(f"job {task.name!r} ran past its timeout of {task.timeout}s while "
                               "blocking the event loop, and was interrupted")
            backtrace = [line for line in format_backtrace(exc) if "`_on_signal'" not in line]
            return Outcome.failure(error, duration, queued, backtrace)
        if isinstance(exc, asyncio.CancelledError):
            if not (task.key and task.key in self._cancel_requested):
                return None  # not asked through cancel(): the caller itself is cancelled
            self._cancel_requested.discard(task.key)
            if me is not None:
                me.uncancel()
            return cancelled_outcome(started, queued)
        if isinstance(exc, Exception):
            return Outcome.failure(exc, duration, queued)
        return None

    def cancel(self, key: str) -> bool:
        caller = self._running.get(key)
        self._cancel_requested.add(key)
        if caller is None:
            return False
        caller.cancel()
        return True

    async def stop(self, grace_s: float = 0.0) -> None:
        pending = list(self._running.values())
        if pending and grace_s > 0:
            await asyncio.wait(pending, timeout=grace_s)
        for caller in pending:
            if not caller.done():
                caller.cancel()
        if self._watch is not None:
            WATCHDOG.unwatch(self._watch)
            self._watch = None


async def _guarded(fn: Callable[..., Any], task: Task, deadline: float | None) -> Any:
    """Call the job. The watchdog knows this frame by its code and reads ``task`` and
    ``deadline`` from its locals, so running a job costs no bookkeeping."""
    result = fn(*task.args, **task.kwargs)
    if type(result) is types.CoroutineType or inspect.isawaitable(result):
        result = await result
    return result


_GUARDED_CODE = _guarded.__code__


def _jobs_on(top: types.FrameType | None) -> list[tuple[Task, float | None]]:
    """(task, deadline) of each job whose ``_guarded`` frame is on this stack, innermost
    first. (Reading ``f_locals`` of a frame that has started only copies its locals.)"""
    out = []
    frame = top
    while frame is not None:
        if frame.f_code is _GUARDED_CODE:
            local = frame.f_locals
            out.append((local["task"], local["deadline"]))
        frame = frame.f_back
    return out


# --- the watchdog ---------------------------------------------------------------------------


@dataclass(eq=False)
class _LoopWatch:
    """One watched loop: its thread, its last tick, and the jobs interrupted while it has been
    blocked this time (``id(task)`` -> when)."""

    loop: asyncio.AbstractEventLoop
    thread_id: int
    on_main_thread: bool
    warn_after_s: float | None
    users: int = 1
    last_tick: float = field(default_factory=time.monotonic)
    warned: bool = False
    interrupted: dict[int, float] = field(default_factory=dict)
    handle: asyncio.TimerHandle | None = None

    def tick(self) -> None:
        self.last_tick = time.monotonic()
        if self.users > 0:
            self.handle = self.loop.call_later(LOOP_TICK_S, self.tick)


class _Watchdog:
    """The process's watchdog thread (see the module docstring); started with the first watched
    loop, stopped with the last."""

    def __init__(self) -> None:
        self._watches: dict[int, _LoopWatch] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._signal_installed = False

    def watch(self, loop: asyncio.AbstractEventLoop, warn_after_s: float | None) -> _LoopWatch:
        """Watch ``loop`` (called on the loop's own thread); returns its shared record."""
        with self._lock:
            w = self._watches.get(id(loop))
            if w is not None and w.loop is loop:
                w.users += 1
                if warn_after_s is not None:
                    w.warn_after_s = min(w.warn_after_s or warn_after_s, warn_after_s)
                return w
            main = threading.current_thread() is threading.main_thread()
            w = _LoopWatch(loop, threading.get_ident(), main and self._install_signal(),
                           warn_after_s)
            self._watches[id(loop)] = w
            w.tick()
            if self._thread is None or not self._thread.is_alive():
                self._stop = threading.Event()
                self._thread = threading.Thread(target=self._run, name="conveyor-loop-watchdog",
                                                daemon=True)
                self._thread.start()
            return w

    def unwatch(self, w: _LoopWatch) -> None:
        with self._lock:
            w.users -= 1
            if w.users > 0:
                return
            if w.handle is not None:
                w.handle.cancel()
            self._watches.pop(id(w.loop), None)
            if not self._watches:
                self._stop.set()
                self._thread = None

    def _install_signal(self) -> bool:
        """Take INTERRUPT_SIGNAL for the main thread's interrupts, unless someone else has.
        The handler stays once installed: it does nothing without a job past its deadline, and
        putting back the default action (terminate) would let a late signal kill the process."""
        if self._signal_installed:
            return True
        previous = signal.getsignal(INTERRUPT_SIGNAL)
        if previous not in (signal.SIG_DFL, None):
            return False
        signal.signal(INTERRUPT_SIGNAL, self._on_signal)
        self._signal_installed = True
        return True

    def _on_signal(self, signum: int, frame: types.FrameType | None) -> None:
        """In the main thread, between two bytecodes: raise in the job only if one past its
        deadline is on the stack right now."""
        w = next((x for x in list(self._watches.values()) if x.on_main_thread), None)
        if w is None:
            return
        now = time.monotonic()
        for task, deadline in _jobs_on(frame):
            if deadline is not None and now >= deadline:
                raise _interrupt_for(task)()

    def _run(self) -> None:
        stop = self._stop
        while not stop.wait(WATCHDOG_INTERVAL_S):
            for w in list(self._watches.values()):
                try:
                    self._check(w)
                except Exception:  # the watchdog must outlive anything odd it finds
                    log.exception("the loop watchdog failed checking a loop")

    def _check(self, w: _LoopWatch) -> None:
        now = time.monotonic()
        stalled_s = now - w.last_tick
        if stalled_s < STALL_S or w.loop.is_closed() or not w.loop.is_running():
            w.warned = False
            w.interrupted.clear()
            return
        top = sys._current_frames().get(w.thread_id)
        if top is None:
            return
        jobs = _jobs_on(top)
        if w.warn_after_s is not None and stalled_s >= w.warn_after_s and not w.warned:
            w.warned = True
            _warn_blocked(stalled_s, top, [task for task, _ in jobs])
        for task, deadline in jobs:
            last = w.interrupted.get(id(task), -INTERRUPT_REPEAT_S)
            if deadline is not None and now >= deadline and now - last >= INTERRUPT_REPEAT_S:
                if w.on_main_thread:
                    signal.pthread_kill(w.thread_id, INTERRUPT_SIGNAL)
                elif not _inject_soon(w.thread_id, task):
                    return  # no safe moment: look again on the next round
                w.interrupted[id(task)] = now
                return


def _warn_blocked(stalled_s: float, top: types.FrameType, jobs: list[Task]) -> None:
    if jobs:
        names = ", ".join(f"{t.name!r}" + (f" ({t.key})" if t.key else "") for t in jobs)
        who = f"by job {names}"
    else:
        who = "outside any asyncio job"
    lines = traceback.format_stack(top, limit=None)[-MAX_STACK_FRAMES:]
    log.warning("the event loop has been blocked for %.1fs %s; every other job on it waits "
                "(move blocking code to the thread or process executor). Its stack:\n%s",
                stalled_s, who, "".join(lines).rstrip())


def _inject_soon(thread_id: int, task: Task) -> bool:
    """:func:`_inject` at the first safe moment within ``INJECT_TRIES`` looks, sleeping
    ``INJECT_RETRY_S`` between them so the loop thread runs on to another bytecode: a busy job
    that calls C functions in its loop is often found right after a call, where injecting is
    refused, and one look per round let it run many seconds past its deadline."""
    for _ in range(INJECT_TRIES):
        top = sys._current_frames().get(thread_id)
        if top is None or all(t is not task for t, _ in _jobs_on(top)):
            return False  # the job is no longer running on that thread
        if _inject(thread_id, task, top):
            return True
        time.sleep(INJECT_RETRY_S)
    return False


def _inject(thread_id: int, task: Task, top: types.FrameType) -> bool:
    """``PyThreadState_SetAsyncExc`` for a loop on another thread (see the module docstring);
    False when the moment was not safe and nothing is left pending."""
    lasti = top.f_lasti
    if lasti < 0 or top.f_code.co_code[lasti] in _CALL_OPCODES:
        return False  # inside a call (maybe into C, without the GIL)
    set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
    set_async_exc(ctypes.c_ulong(thread_id), ctypes.py_object(_interrupt_for(task)))
    if sys._current_frames().get(thread_id) is not top or top.f_lasti != lasti:
        # the thread ran between the check and the injection: withdraw it (if it was raised
        # already, it was raised at the thread's first check, inside the job or in ``_call``)
        set_async_exc(ctypes.c_ulong(thread_id), None)
        return False
    return True


WATCHDOG = _Watchdog()
