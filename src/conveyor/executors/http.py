"""Run jobs in a sidecar over HTTP: job code in any language, in its own process.

Each task is one ``POST /v1/jobs`` of the job's JSON to the sidecar (``docs/sidecar-protocol.md``)
over a pool of at most ``capacity`` keep-alive HTTP/1.1 connections. The sidecar answers
``{"status": "ok", "result"}`` or ``{"status": "error", "error_class", "error_message",
"backtrace"}``; that becomes the task's Outcome.

The connections come from ``_http1.Http1Pool`` rather than ``httpx``: see that module for the
measurements behind the choice.

* Timeouts: the job's timeout travels in the request so the sidecar can stop the job itself;
  if no answer comes ``TIMEOUT_GRACE_S`` after it, the call is aborted (``JobTimeout``) and a
  best-effort ``DELETE /v1/jobs/<jid>`` asks the sidecar to drop the job.
* Cancellation aborts the call and sends the same ``DELETE``.
* Failures of the sidecar itself (unreachable, connection dropped, HTTP 5xx, an answer that is
  not the protocol's) fail the task with ``WorkerLost`` and count in a circuit breaker. A job's
  own exception does not count: the sidecar worked. The breaker of a sidecar that several
  workers may call (``url=``, or any sidecar given ``name=``) is shared in Redis as
  ``sidecar:<name or url>`` (``conveyor.flow.sidecar``): in a worker, the admission gate checks
  it before each job declared ``executor="http"`` and, while it is open, defers the job to the
  time a probe may go through (not a failure, not a retry); this executor classifies each call
  and the gate records it. Calls no gate admitted (pipelines, no Redis, queue overrides) and
  supervised sidecars without ``name=`` (private to this worker) use the local breaker
  (``_breaker``): while it is open, tasks fail at once with ``CircuitOpen`` (retried).
* With ``command=`` the executor launches the sidecar itself and supervises it
  (``_supervisor``): waits for ``GET /v1/health``, restarts it when it dies (``stats().restarts``)
  and closes the breaker when it is healthy again.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ..errors import CircuitOpen, ConfigurationError, ExecutorClosed, JobTimeout, WorkerLost
from ..flow import sidecar as shared
from ..flow.breaker import Breaker
from ..job import dumps, loads
from . import register_executor
from ._breaker import CircuitBreaker
from ._http1 import Http1Pool, HttpFailure, HttpResponse
from ._supervisor import SidecarSupervisor
from ._wire import outcome_from_wire
from .base import Executor, ExecutorStats, Outcome, Task, cancelled_outcome

PROTOCOL_VERSION = 1
JOBS_PATH = "/v1/jobs"
HEALTH_PATH = "/v1/health"
DEFAULT_CAPACITY = 100
CONNECT_TIMEOUT_S = 5.0
KEEPALIVE_EXPIRY_S = 30.0  # under the 60 s the protocol asks sidecars to keep idle connections
TIMEOUT_GRACE_S = 1.0  # the sidecar enforces the timeout itself; we abort this much later
DEFAULT_MAX_CALL_S = 3600.0  # a job without a timeout: its call is aborted after this long
CANCEL_CALL_TIMEOUT_S = 2.0
HEALTH_CALL_TIMEOUT_S = 2.0
CONTROL_CONNECTIONS = 2  # for health checks and cancels, so they never queue behind jobs
MAX_ERROR_BODY_CHARS = 200


class HttpExecutor(Executor):
    """Tasks are POSTed to a sidecar at ``url``, or to one launched from ``command``."""

    kind = "http"

    def __init__(self, functions: Mapping[str, Callable[..., Any]], capacity: int | None = None,
                 *, url: str | None = None, command: str | Sequence[str] | None = None,
                 env: Mapping[str, str] | None = None, cwd: str | None = None,
                 startup_timeout_s: float = 30.0, breaker: CircuitBreaker | None = None,
                 failure_threshold: int = 5, reset_after_s: float = 5.0,
                 name: str | None = None,
                 max_call_s: float | None = DEFAULT_MAX_CALL_S) -> None:
        super().__init__(functions, capacity or DEFAULT_CAPACITY)
        if url is None and command is None:
            raise ConfigurationError("the http executor needs url= (a running sidecar) or "
                                     "command= (a sidecar to launch and supervise)")
        port = urlsplit(url).port if url else _free_port()
        self.url = (url or f"http://127.0.0.1:{port}").rstrip("/")
        if isinstance(command, str):
            command = shlex.split(command)
        self.command = [part.replace("{port}", str(port)) for part in command or ()]
        self.env, self.cwd, self.startup_timeout_s = env, cwd, startup_timeout_s
        self.max_call_s = max_call_s
        self.breaker = breaker or CircuitBreaker(failure_threshold, reset_after_s)
        self.guard: shared.SidecarGuard | None = None
        if name is not None or url is not None:
            policy = Breaker(failures=self.breaker.failure_threshold,
                             open_s=self.breaker.reset_after_s,
                             half_open_probes=self.breaker.half_open_calls)
            self.guard = shared.SidecarGuard(name or self.url, policy)
        self.supervisor: SidecarSupervisor | None = None
        self._slots = asyncio.Semaphore(self.capacity)
        self._running: dict[str, asyncio.Future[HttpResponse]] = {}
        self._cancelling: set[str] = set()
        self._background: set[asyncio.Future[Any]] = set()
        self._drained = asyncio.Event()
        self._closed = False

    async def start(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigurationError(f"the http executor speaks plain http:// to a local "
                                     f"sidecar; got url {self.url!r}")
        headers = {"Conveyor-Protocol": str(PROTOCOL_VERSION),
                   "Content-Type": "application/json"}
        self._pool, self._control = (
            Http1Pool(parts.hostname, parts.port or 80, size, connect_timeout_s=CONNECT_TIMEOUT_S,
                      idle_expiry_s=KEEPALIVE_EXPIRY_S, headers=headers)
            for size in (self.capacity, CONTROL_CONNECTIONS))
        if self.command:
            self.supervisor = SidecarSupervisor(
                self.command, self.url + HEALTH_PATH, self.healthy, env=self.env, cwd=self.cwd,
                startup_timeout_s=self.startup_timeout_s, on_up=self.breaker.reset)
            await self.supervisor.start()
        if self.guard is not None:  # last: a start that failed leaves nothing registered
            self.guard = shared.register(self.functions, self.kind, self.guard)

    async def healthy(self) -> bool:
        """Does the sidecar answer ``GET /v1/health`` with 200?"""
        try:
            reply = await asyncio.wait_for(self._control.request("GET", HEALTH_PATH),
                                           HEALTH_CALL_TIMEOUT_S)
        except (HttpFailure, TimeoutError):
            return False
        return reply.status == 200

    async def run(self, task: Task) -> Outcome:
        if self._closed:
            return self._record(Outcome.failure(ExecutorClosed("the http executor is stopped")))
        try:
            body = request_body(task)
        except Exception as exc:
            return self._record(Outcome.failure(exc, 0.0, time.monotonic() - task.submitted, []))
        key = task.key or f"_{id(task)}"
        async with self._slots:
            started = time.monotonic()
            queued = started - task.submitted
            if not self._covered(task) and not self.breaker.allow():
                return self._record(Outcome.failure(self._open_error(), 0.0, queued, []))
            self._stats.in_flight += 1
            self._drained.clear()
            call = asyncio.ensure_future(self._pool.request("POST", JOBS_PATH, body))
            self._running[key] = call
            try:
                return self._record(await self._finish(call, task, key, started, queued))
            finally:
                self._running.pop(key, None)
                self._cancelling.discard(key)
                self._stats.in_flight -= 1
                if self._stats.in_flight == 0:
                    self._drained.set()

    async def _finish(self, call: asyncio.Future[HttpResponse], task: Task, key: str,
                      started: float, queued: float) -> Outcome:
        limit = self.max_call_s if not task.timeout else task.timeout + TIMEOUT_GRACE_S
        try:
            response = await asyncio.wait_for(call, limit)
        except TimeoutError:
            self._count(task, "neutral")
            self._cancel_remote(task.key)
            if task.timeout:
                why = f"ran past its timeout of {task.timeout}s"
            else:
                why = (f"has no timeout and got no answer within max_call_s={self.max_call_s}s "
                       "(give the job a timeout, or raise max_call_s)")
            timeout = JobTimeout(f"job {task.name!r} {why}; the call to the sidecar at "
                                 f"{self.url} was aborted")
            return Outcome.failure(timeout, time.monotonic() - started, queued, [])
        except asyncio.CancelledError:
            self._count(task, "neutral")
            self._cancel_remote(task.key)
            if key in self._cancelling:
                self._cancelling.discard(key)
                return cancelled_outcome(started, queued)
            raise
        except HttpFailure as exc:
            self._count(task, "failure")
            error = WorkerLost(f"the call to the sidecar at {self.url} for job {task.name!r} "
                               f"failed: {exc}")
            return Outcome.failure(error, time.monotonic() - started, queued, [])
        return self._read(task, response, time.monotonic() - started, queued)

    def _covered(self, task: Task) -> bool:
        """Did the worker's gate admit this task through the shared breaker?"""
        return self.guard is not None and bool(task.key) and self.guard.covers(task.key)

    def _count(self, task: Task, outcome: str) -> None:
        """A call's verdict for the breaker: noted for the gate (shared), or counted here."""
        if self._covered(task):
            assert self.guard is not None
            self.guard.note(task.key, outcome)
        elif outcome == "failure":
            self.breaker.record_failure()
        elif outcome == "success":
            self.breaker.record_success()
        else:
            self.breaker.record_neutral()

    def _read(self, task: Task, response: HttpResponse, duration: float,
              queued: float) -> Outcome:
        try:
            data = loads(response.body)
        except ValueError:
            data = None
        status = data.get("status") if isinstance(data, dict) else None
        if response.status >= 500 or status not in ("ok", "error"):
            self._count(task, "failure")
            text = response.text[:MAX_ERROR_BODY_CHARS]
            error = WorkerLost(f"the sidecar at {self.url} answered HTTP {response.status} "
                               f"without a job result: {text}")
            return Outcome.failure(error, duration, queued, [])
        self._count(task, "success")
        assert isinstance(data, dict)
        if status == "ok":
            return Outcome.success(data.get("result"), duration, queued)
        wire = {"ok": False, "error_class": data.get("error_class"),
                "message": data.get("error_message"), "backtrace": data.get("backtrace"),
                "delay": data.get("retry_in")}
        return outcome_from_wire(wire, duration, queued)

    def _open_error(self) -> CircuitOpen:
        return CircuitOpen(
            f"not calling the sidecar at {self.url}: the circuit is open after "
            f"{self.breaker.failures} failures in a row; next try in "
            f"{self.breaker.retry_in_s():.1f}s")

    def _cancel_remote(self, jid: str) -> None:
        """Best effort: ask the sidecar to stop a job whose call we abandoned."""
        if jid and not self._closed:
            self._keep(asyncio.ensure_future(self._delete(jid)))

    async def _delete(self, jid: str) -> None:
        with contextlib.suppress(HttpFailure, TimeoutError):
            await asyncio.wait_for(self._control.request("DELETE", f"{JOBS_PATH}/{jid}"),
                                   CANCEL_CALL_TIMEOUT_S)

    def _keep(self, fut: asyncio.Future[Any]) -> None:
        self._background.add(fut)
        fut.add_done_callback(self._background.discard)

    def cancel(self, key: str) -> bool:
        call = self._running.get(key)
        if call is None:
            return False
        self._cancelling.add(key)
        call.cancel()
        return True

    def stats(self) -> ExecutorStats:
        if self.supervisor is not None:
            self._stats.restarts = self.supervisor.restarts
        return self._stats

    async def stop(self, grace_s: float = 0.0) -> None:
        self._closed = True
        if self._stats.in_flight and grace_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), grace_s)
        for call in list(self._running.values()):
            call.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.guard is not None:
            shared.unregister(self.functions, self.kind, self.guard)
        if self.supervisor is not None:
            await self.supervisor.stop()
        self._pool.close()
        self._control.close()


def request_body(task: Task) -> bytes:
    """The JSON body of ``POST /v1/jobs`` for a task (SerializationError if it is not JSON)."""
    body: dict[str, Any] = {"jid": task.key, "class": task.name, "args": list(task.args)}
    if task.kwargs:
        body["kwargs"] = task.kwargs
    if task.timeout:
        body["timeout"] = task.timeout
    for field in ("queue", "attempt"):
        value = getattr(task.context, field, None)
        if value is not None:
            body[field] = value
    return dumps(body)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


register_executor("http", HttpExecutor)
