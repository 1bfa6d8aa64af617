"""The sidecar's ASGI application: ``POST /v1/jobs``, ``GET /v1/health``, ``DELETE /v1/jobs/{jid}``.

Jobs run in this process on the executors a worker would use for them in-process: coroutine
functions on the event loop (``asyncio``), plain functions in a thread pool (``thread``); the
timeout in the request is enforced the same way (a thread cannot be killed: its answer comes
back ``JobTimeout`` and the thread finishes in the background). The protocol rules live in
``docs/sidecar-protocol.md``; in short:

* one job per request, answered 200 with ``status`` ``ok`` or ``error`` once it is over;
* 400 for a request that is not a job, 404 for an unknown job type, 409 while a job with the
  same ``jid`` is running here, 413 for a body over ``MAX_REQUEST_BYTES``, 503 while stopping;
* the last ``REPLAY_CACHE_SIZE`` answers are kept by ``(jid, attempt)`` and replayed to a
  repeated request instead of running the job again.
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..app import App
from ..context import JobContext
from ..errors import UnknownJobType
from ..executors import Executor, Outcome, Task, create_executor
from ..job import dumps, loads

PROTOCOL_VERSION = 1
MAX_REQUEST_BYTES = 16 * 1024 * 1024
REPLAY_CACHE_SIZE = 1024
DEFAULT_CONCURRENCY = 100
DEFAULT_THREADS = 16


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(dumps(body), status, media_type="application/json")


def _error(status: int, error_class: str, message: str, jid: str = "") -> Response:
    return _json(status, {"status": "error", "jid": jid, "error_class": error_class,
                          "error_message": message, "backtrace": []})


def parse_job_request(raw: bytes) -> dict[str, Any]:
    """The request as a dict, or ValueError saying which field is wrong."""
    try:
        body = loads(raw)
    except ValueError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    checks = (("class", str, True), ("args", list, True), ("jid", str, False),
              ("kwargs", dict, False), ("queue", str, False), ("attempt", int, False),
              ("timeout", int | float, False))
    for name, kind, required in checks:
        if name not in body or body[name] is None:
            if required:
                raise ValueError(f"the field {name!r} is missing")
            continue
        if not isinstance(body[name], kind) or isinstance(body[name], bool):
            raise ValueError(f"the field {name!r} has the wrong type")
    if not body["class"]:
        raise ValueError("the field 'class' is empty")
    return body


def outcome_body(jid: str, outcome: Outcome) -> dict[str, Any]:
    if outcome.ok:
        return {"status": "ok", "jid": jid, "result": outcome.value,
                "duration_s": round(outcome.duration_s, 6)}
    body = {"status": "error", "jid": jid, "error_class": outcome.error_class,
            "error_message": outcome.message, "backtrace": outcome.backtrace,
            "duration_s": round(outcome.duration_s, 6)}
    delay = getattr(outcome.error, "delay", None)
    if isinstance(delay, int | float):
        body["retry_in"] = delay
    return body


class Sidecar:
    """The state behind the routes: executors, running jobs, recent answers."""

    def __init__(self, app: App, concurrency: int, threads: int) -> None:
        self.app = app
        self.concurrency = concurrency
        self.threads = threads
        self.executors: dict[str, Executor] = {}
        self.running: dict[str, tuple[JobContext, Executor]] = {}
        self.replies: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self.stopping = False

    @contextlib.asynccontextmanager
    async def lifespan(self, _: Starlette) -> AsyncIterator[None]:
        self.executors = {
            "asyncio": create_executor("asyncio", self.app.functions, self.concurrency),
            "thread": create_executor("thread", self.app.functions, self.threads),
        }
        for executor in self.executors.values():
            await executor.start()
        try:
            yield
        finally:
            self.stopping = True
            for executor in self.executors.values():
                await executor.stop(0)

    async def health(self, request: Request) -> Response:
        return _json(200, {"status": "stopping" if self.stopping else "ok",
                           "protocol": PROTOCOL_VERSION, "pid": os.getpid(),
                           "jobs": sorted(self.app.registry), "in_flight": len(self.running),
                           "capacity": self.concurrency})

    async def run_job(self, request: Request) -> Response:
        if self.stopping:
            return _error(503, "Unavailable", "the sidecar is stopping")
        raw = await request.body()
        if len(raw) > MAX_REQUEST_BYTES:
            return _error(413, "RequestTooLarge", f"the body is over {MAX_REQUEST_BYTES} bytes")
        try:
            job = parse_job_request(raw)
        except ValueError as exc:
            return _error(400, "BadRequest", str(exc))
        jid, attempt = job.get("jid") or "", int(job.get("attempt") or 1)
        replay = self.replies.get((jid, attempt)) if jid else None
        if replay is not None:
            return Response(replay, 200, media_type="application/json",
                            headers={"Conveyor-Replayed": "true"})
        spec = self.app.registry.get(job["class"])
        if spec is None:
            return _error(404, "UnknownJobType", str(UnknownJobType(job["class"],
                                                                    self.app.registry)), jid)
        if jid and jid in self.running:
            return _error(409, "JobAlreadyRunning", f"job {jid} is already running here", jid)
        return await self._run(job, jid, attempt, "asyncio" if spec.is_async else "thread")

    async def _run(self, job: dict[str, Any], jid: str, attempt: int, kind: str) -> Response:
        ctx = JobContext(jid, job["class"], job.get("queue") or "default", attempt)
        executor = self.executors[kind]
        key = jid or f"_{id(ctx)}"
        self.running[key] = (ctx, executor)
        try:
            task = Task(job["class"], job["args"], job.get("kwargs") or {}, job.get("timeout"),
                        key=key, context=ctx)
            outcome = await executor.run(task)
        finally:
            self.running.pop(key, None)
        try:
            body = dumps(outcome_body(jid, outcome))
        except Exception as exc:
            body = dumps(outcome_body(jid, Outcome.failure(exc, outcome.duration_s)))
        if jid:
            self.replies[(jid, attempt)] = body
            while len(self.replies) > REPLAY_CACHE_SIZE:
                self.replies.popitem(last=False)
        return Response(body, 200, media_type="application/json")

    async def cancel_job(self, request: Request) -> Response:
        jid = request.path_params["jid"]
        entry = self.running.get(jid)
        if entry is None:
            return _json(404, {"status": "unknown", "jid": jid})
        ctx, executor = entry
        ctx.cancelled = True
        executor.cancel(jid)
        return _json(202, {"status": "cancelling", "jid": jid})


def create_app(app: App, *, concurrency: int = DEFAULT_CONCURRENCY,
               threads: int = DEFAULT_THREADS) -> Starlette:
    """The ASGI app serving ``app``'s registered jobs by the sidecar protocol."""
    sidecar = Sidecar(app, concurrency, threads)
    routes = [
        Route("/v1/jobs", sidecar.run_job, methods=["POST"]),
        Route("/v1/jobs/{jid}", sidecar.cancel_job, methods=["DELETE"]),
        Route("/v1/health", sidecar.health, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=sidecar.lifespan)
