"""Enqueueing and job handles, sync and async.

A request becomes a Sidekiq-format payload (see ``job.py``) and one script call puts it in its
queue or the schedule together with its status record. ``enqueue_many`` validates the whole batch
first, then sends it in one round trip of script calls of ENQUEUE_CHUNK jobs each, encoding a
chunk while Redis runs the one before (the per-job work of a plain request is its orjson calls
and a handle; see ``docs/benchmarks.md``, "Where the time goes: enqueue"). A :class:`JobHandle`
reads a job's status and waits for its result.
While OpenTelemetry tracing is on, each job is enqueued under its own PRODUCER span and carries
its ``traceparent`` (``conveyor.tracing.enqueue_spans``); while it is off that costs nothing.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import tracing
from .broker import AsyncBroker, EnqueueItem, Pushed, SyncBroker
from .broker.redis import ENQUEUE_CHUNK
from .errors import JobFailed, JobNotFound
from .flow.unique import resolve as resolve_unique
from .job import (
    JID_BYTES,
    build_payload,
    check_arguments,
    dumps,
    encodable,
    encode_job,
    encode_timestamp,
    loads,
    new_jid,
    now_s,
    payload_head,
    plain_encoder,
    stamp_enqueued,
    validate_queue_name,
)

if TYPE_CHECKING:
    from .app import App

RESULT_POLL_MIN_S = 0.005
RESULT_POLL_MAX_S = 0.25
_JID_HEX = 2 * JID_BYTES
_Route = tuple[str, bytes, bool | int]  # a plain request's queue, payload head and retry
TERMINAL_STATES = frozenset({"completed", "dead", "failed", "cancelled"})
STATES = ("scheduled", "enqueued", "active", "retrying", "completed", "dead", "failed", "cancelled")


@dataclass
class EnqueueRequest:
    """One job to enqueue. Give ``queue`` or ``priority`` (high, normal, low), not both;
    ``delay`` (seconds from now) or ``at`` (a datetime or epoch seconds), not both."""

    name: str
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: str | None = None
    delay: float | None = None
    at: datetime | float | None = None
    retry: bool | int | None = None
    timeout: float | None = None
    jid: str | None = None
    extra: Mapping[str, Any] | None = None
    # unique jobs (conveyor.flow.unique): while a job holds ``unique_key``, enqueueing another
    # with that key returns the first job's id. TTL in seconds; scope queued|running|completed.
    unique_key: str | None = None
    unique_ttl: float | None = None
    unique_scope: str | None = None


@dataclass(frozen=True)
class JobStatus:
    """A job's status record, as stored with a TTL under ``conveyor:job:<jid>``."""

    jid: str
    state: str
    name: str = ""
    queue: str = ""
    attempts: int = 0
    created_at: float | None = None
    enqueued_at: float | None = None
    scheduled_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    retry_at: float | None = None
    error_class: str = ""
    error_message: str = ""
    worker: str = ""
    result: Any = None
    progress: Any = None
    deferred_reason: str = ""  # why flow control last deferred it (rate limit, breaker...)
    admitted_at: float | None = None  # when flow control let it start (jobs with limits)

    @classmethod
    def from_record(cls, jid: str, rec: Mapping[str, str]) -> JobStatus:
        def num(key: str) -> float | None:
            value = rec.get(key)
            return float(value) if value else None

        return cls(
            jid=jid,
            state=rec.get("state", "unknown"),
            name=rec.get("class", ""),
            queue=rec.get("queue", ""),
            attempts=int(rec.get("attempts") or 0),
            created_at=num("created_at"),
            enqueued_at=num("enqueued_at"),
            scheduled_at=num("scheduled_at"),
            started_at=num("started_at"),
            finished_at=num("finished_at"),
            retry_at=num("retry_at"),
            error_class=rec.get("error_class", ""),
            error_message=rec.get("error_message", ""),
            worker=rec.get("worker", ""),
            result=loads(rec["result"]) if rec.get("result") else None,
            progress=loads(rec["progress"]) if rec.get("progress") else None,
            deferred_reason=rec.get("deferred_reason", ""),
            admitted_at=num("admitted_at"),
        )

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES


class JobHandle:
    """A reference to an enqueued job: its id, its status and its result."""

    # slots: a bulk enqueue makes one per job, and a handle without a __dict__ is half the
    # objects for the garbage collector to track
    __slots__ = ("_inline", "client", "duplicate", "id")

    def __init__(self, client: Client, jid: str, inline_status: JobStatus | None = None,
                 duplicate: bool = False) -> None:
        self.client = client
        self.id = jid
        self._inline = inline_status
        self.duplicate = duplicate  # True: a unique lock was held; ``id`` is the holder's

    @property
    def jid(self) -> str:
        return self.id

    def __repr__(self) -> str:
        return f"<JobHandle {self.id}>"

    def status(self) -> JobStatus:
        """The job's current status; raises JobNotFound when no record exists (or it expired)."""
        if self._inline is not None:
            return self._inline
        rec = self.client.sync.status(self.id)
        if not rec:
            raise JobNotFound(f"no job {self.id!r} (unknown id, or its status record expired)")
        return JobStatus.from_record(self.id, rec)

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the job to finish and return its result; raise JobFailed if it did not
        complete, TimeoutError if ``timeout`` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = RESULT_POLL_MIN_S
        while True:
            st = self.status()
            if st.finished:
                return _result_of(st)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.id} is still {st.state} after {timeout}s")
            time.sleep(pause)
            pause = min(RESULT_POLL_MAX_S, pause * 2)

    async def aresult(self, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = RESULT_POLL_MIN_S
        while True:
            st = await asyncio.to_thread(self.status)
            if st.finished:
                return _result_of(st)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.id} is still {st.state} after {timeout}s")
            await asyncio.sleep(pause)
            pause = min(RESULT_POLL_MAX_S, pause * 2)

    def cancel(self) -> str:
        """Cancel the job; returns the state it had before."""
        return self.client.sync.cancel(self.id)


def _result_of(st: JobStatus) -> Any:
    if st.state == "completed":
        return st.result
    raise JobFailed(st)


class Client:
    """Turns enqueue requests into payloads and pushes them (sync or async)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._sync: SyncBroker | None = None
        self._async: AsyncBroker | None = None

    @property
    def sync(self) -> SyncBroker:
        if self._sync is None:
            from .embedded import resolve_redis_url

            self._sync = SyncBroker(resolve_redis_url(self.app.settings), self.app.settings)
        return self._sync

    async def async_broker(self) -> AsyncBroker:
        loop = asyncio.get_running_loop()
        if self._async is not None and self._async.loop is loop:
            return self._async
        from .embedded import resolve_redis_url

        # resolved without awaiting between the check and the assignment, so concurrent first
        # calls on one loop share one pool instead of each building (and leaking) their own
        url = self.app.settings.redis_url or resolve_redis_url(self.app.settings)
        if self._async is None or self._async.loop is not loop:
            self._async = AsyncBroker(url, self.app.settings)
        return self._async

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        """Close the async connection pool (call from the loop that used it)."""
        if self._async is not None:
            await self._async.close()
            self._async = None
        self.close()

    # --- building ------------------------------------------------------------------------------
    def build(self, req: EnqueueRequest,
              spans: tracing.EnqueueSpans | None = None) -> EnqueueItem:
        """Validate a request and build its payload; raises before anything is sent. With
        ``spans`` (tracing on), the job gets an enqueue span unless it carries a traceparent."""
        now = now_s()
        return self._build(req, new_jid(), now, encode_timestamp(now), spans)

    def build_many(self, reqs: Sequence[EnqueueRequest],
                   spans: tracing.EnqueueSpans | None = None) -> list[EnqueueItem]:
        """Build a batch, validating every request before anything is sent."""
        return [item for chunk in self._batch(reqs, spans) for item in chunk]

    def _batch(self, reqs: Sequence[EnqueueRequest], spans: tracing.EnqueueSpans | None,
               handles: list[JobHandle] | None = None) -> Iterator[list[EnqueueItem]]:
        """Validate a batch now, raising before anything is sent, and return an iterator that
        encodes its jobs a chunk (ENQUEUE_CHUNK jobs, one script call) at a time, so the
        broker sends a chunk while the next one is encoded. A handle per job is appended to
        ``handles`` on the way.

        The batch shares one clock reading for ``created_at``/``enqueued_at`` (as Sidekiq's
        ``push_bulk`` does) and one draw of random bytes for its job ids. A plain request (due
        now, no unique lock, no extra keys) has its type's queue and payload head looked up
        once per batch, and the arguments of all of them are checked in one orjson call; the
        others are built in full here."""
        now = now_s()
        stamp = encode_timestamp(now)
        ids = os.urandom(JID_BYTES * len(reqs)).hex()
        routes: dict[tuple[str, str | None, bool | int | None], _Route | None] = {}
        entries: list[_Route | EnqueueItem] = []
        for req, i in zip(reqs, range(0, len(ids), _JID_HEX), strict=True):
            route = None
            if spans is None and _plain(req):  # a traced request carries a traceparent
                key = (req.name, req.queue, req.retry)
                route = routes[key] if key in routes else routes.setdefault(key, self._route(req))
            entries.append(route or self._build(req, ids[i : i + _JID_HEX], now, stamp, spans))
        if not encodable([(r.args, r.kwargs) for r, e in zip(reqs, entries, strict=True)
                          if type(e) is tuple]):  # the general path says what is wrong
            entries = [self._build(r, ids[i : i + _JID_HEX], now, stamp) if type(e) is tuple
                       else e for r, e, i in zip(reqs, entries, range(0, len(ids), _JID_HEX),
                                                 strict=True)]
        return self._encoded(reqs, entries, ids, stamp, handles)

    def _encoded(self, reqs: Sequence[EnqueueRequest], entries: list[_Route | EnqueueItem],
                 ids: str, stamp: bytes,
                 handles: list[JobHandle] | None) -> Iterator[list[EnqueueItem]]:
        encode = plain_encoder(stamp)
        for start in range(0, len(reqs), ENQUEUE_CHUNK):
            end = start + ENQUEUE_CHUNK
            jids = [ids[i : i + _JID_HEX] for i in range(start * _JID_HEX,
                                                          min(len(ids), end * _JID_HEX), _JID_HEX)]
            chunk = [e if isinstance(e, EnqueueItem)
                     else EnqueueItem(e[0], encode(e[1], r.args, r.kwargs, jid), jid, r.name)
                     for r, e, jid in zip(reqs[start:end], entries[start:end], jids, strict=True)]
            if handles is not None:
                handles += [JobHandle(self, item.jid) for item in chunk]
            yield chunk

    def _route(self, req: EnqueueRequest) -> _Route | None:
        """The queue, payload head and retry of a plain request; None when its type is unique."""
        spec = self.app.registry.get(req.name)
        if spec is not None and spec.options.get("unique") not in (None, False):
            return None
        queue = self._queue_of(req, spec.queue if spec else "default")
        retry: bool | int = req.retry if req.retry is not None else (spec.retry if spec else True)
        return queue, payload_head(req.name, queue, retry), retry

    def _build(self, req: EnqueueRequest, jid: str, now: float, stamp: bytes,
               spans: tracing.EnqueueSpans | None = None) -> EnqueueItem:
        spec = self.app.registry.get(req.name)
        queue = self._queue_of(req, spec.queue if spec else "default")
        retry: bool | int = req.retry if req.retry is not None else (spec.retry if spec else True)
        jid = req.jid or jid
        if spans is not None and tracing.TRACEPARENT not in (req.extra or {}):
            req = replace(req, extra={**(req.extra or {}), **spans.carrier(req.name, queue, jid)})
        when = _when(req)
        raw = None
        if not req.extra and req.timeout is None:
            raw = encode_job(payload_head(req.name, queue, retry), req.args, req.kwargs, jid,
                             stamp, None if when else stamp)
        if raw is None:  # extra keys, or arguments the fast encoding leaves to the general one
            raw = _encode_general(req, queue, retry, jid, now, when)
        item = EnqueueItem(queue, raw, jid, req.name, when)
        if (req.unique_key is not None or req.unique_ttl is not None
                or req.unique_scope is not None
                or (spec is not None and spec.options.get("unique") not in (None, False))):
            unique = resolve_unique(req.name, queue, req.args, req.kwargs,
                                    spec.fn if spec else None,
                                    spec.options.get("unique") if spec else None,
                                    req.unique_key, req.unique_ttl, req.unique_scope)
            if unique is not None:
                item.unique_key, item.unique_ttl_s, item.unique_scope = unique
        return item

    def _queue_of(self, req: EnqueueRequest, default: str) -> str:
        if req.queue and req.priority:
            raise ValueError("give queue= or priority=, not both")
        if req.priority is not None:
            try:
                return self.app.priority_queues[req.priority]
            except KeyError:
                known = ", ".join(self.app.priority_queues)
                raise ValueError(f"priority {req.priority!r} is not one of: {known}") from None
        return validate_queue_name(req.queue or default)

    # --- sending ---------------------------------------------------------------------------------
    def enqueue(self, req: EnqueueRequest) -> JobHandle:
        with tracing.enqueue_spans() as spans:  # ended once the push returned
            item = self.build(req, spans)
            if self.app.inline:
                return self._run_inline(req, item)
            return self._handles([item], self.sync.push([item]))[0]

    def enqueue_many(self, reqs: Sequence[EnqueueRequest]) -> list[JobHandle]:
        with tracing.enqueue_spans() as spans:
            if self.app.inline:
                items = self.build_many(reqs, spans)
                return [self._run_inline(r, i) for r, i in zip(reqs, items, strict=True)]
            handles: list[JobHandle] = []
            # the broker sends each chunk while the next one is encoded
            pushed = self.sync.push_chunks(self._batch(reqs, spans, handles))
            for i, holder in pushed.duplicates.items():
                handles[i] = JobHandle(self, holder, duplicate=True)
            return handles

    def _handles(self, items: Sequence[EnqueueItem], pushed: Pushed) -> list[JobHandle]:
        """Handles in request order; a duplicate gets the id of the job holding its lock."""
        if not pushed.duplicates:
            return [JobHandle(self, it.jid) for it in items]
        return [JobHandle(self, pushed.duplicates[i], duplicate=True) if i in pushed.duplicates
                else JobHandle(self, it.jid) for i, it in enumerate(items)]

    async def aenqueue(self, req: EnqueueRequest) -> JobHandle:
        with tracing.enqueue_spans() as spans:
            item = self.build(req, spans)
            if self.app.inline:
                return await asyncio.to_thread(self._run_inline, req, item)
            broker = await self.async_broker()
            return self._handles([item], await broker.push([item]))[0]

    async def aenqueue_many(self, reqs: Sequence[EnqueueRequest]) -> list[JobHandle]:
        with tracing.enqueue_spans() as spans:
            items = self.build_many(reqs, spans)
            if self.app.inline:
                return [await asyncio.to_thread(self._run_inline, r, i)
                        for r, i in zip(reqs, items, strict=True)]
            broker = await self.async_broker()
            return self._handles(items, await broker.push(items))

    def _run_inline(self, req: EnqueueRequest, item: EnqueueItem) -> JobHandle:
        from .testing import run_inline

        return JobHandle(self, item.jid, run_inline(self.app, item))


def _plain(req: EnqueueRequest) -> bool:
    """Due now, without a unique lock, a chosen id or extra payload keys."""
    return (req.priority is None and req.delay is None and req.at is None and not req.extra
            and req.timeout is None and req.jid is None and req.unique_key is None
            and req.unique_ttl is None and req.unique_scope is None)


def _encode_general(req: EnqueueRequest, queue: str, retry: bool | int, jid: str, now: float,
                    when: str) -> bytes:
    """The payload through a dict: for extra keys, and for arguments that need an exact
    (big integers) or a precise refusal (what cannot travel as JSON, and where it is)."""
    check_arguments(req.args, req.kwargs)
    extra: dict[str, Any] = dict(req.extra or {})
    if req.timeout is not None:
        extra["timeout"] = req.timeout
    payload = build_payload(req.name, req.args, req.kwargs, queue=queue, retry=retry, jid=jid,
                            created_at=now, extra=extra)
    if not when:
        stamp_enqueued(payload, now)
    return dumps(payload)


def _when(req: EnqueueRequest) -> str:
    if req.delay is not None and req.at is not None:
        raise ValueError("give delay= or at=, not both")
    if req.delay is not None:
        if req.delay < 0:
            raise ValueError(f"delay must be zero or more seconds, got {req.delay}")
        return f"+{float(req.delay):.6f}" if req.delay > 0 else ""
    if req.at is not None:
        ts = req.at.timestamp() if isinstance(req.at, datetime) else float(req.at)
        return f"@{ts:.6f}"
    return ""
