"""Job routes: submit (one or a batch), read, cancel, retry; and the registered job types.

``Idempotency-Key``: the job id is derived from the key (HMAC-SHA256, 24 hex characters, like a
Sidekiq jid), so the same key names the same job. Before enqueueing, the job's status record is
looked up under a per-key lock; if it exists the earlier job is answered (200, ``replayed``)
instead of a new one (202). The window is the status record's TTL (7 days by default). Two API
processes racing on one key within a few milliseconds could both enqueue; see docs/api.md.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import zlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response

from ..admin import Inspector
from ..client import EnqueueRequest, JobStatus
from ..errors import BrokerError, ConveyorError, JobNotFound, UnknownJobType
from ..job import dumps, loads
from ..logs import redact
from ..retry import decompress_backtrace
from .auth import require
from .config import Scope
from .errors import COMMON_RESPONSES, NOT_FOUND, ApiError, _doc, reject_unknown_query
from .models import (
    EXCLUSIVE_PAIRS,
    UNIQUE_FIELDS,
    BatchAccepted,
    BatchSubmit,
    JobAccepted,
    JobId,
    JobSubmit,
    JobType,
    StateChange,
)
from .state import JOB_OVERHEAD_BYTES, ApiState

router = APIRouter(prefix="/api/v1", tags=["jobs"], responses=COMMON_RESPONSES,
                   dependencies=[Depends(reject_unknown_query)])
IdempotencyKey = Annotated[str | None, Header(max_length=200, description=(
    "The same key returns the same job instead of enqueueing another"))]
READ = Depends(require(Scope.READ))
ENQUEUE = Depends(require(Scope.ENQUEUE))
ADMIN = Depends(require(Scope.ADMIN))
TERMINAL = ("completed", "dead", "failed", "cancelled")
SET_OF_STATE = {"retrying": "retry", "dead": "dead", "scheduled": "schedule"}
IDEMPOTENCY_DOMAIN = b"conveyor-idempotency-key"


@dataclass(frozen=True)
class JobDetail(JobStatus):
    """A job's status record, plus its arguments and backtrace when it sits in a set."""

    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    error_backtrace: list[str] = field(default_factory=list)
    found_in: str = ""


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


def derive_jid(key: str) -> str:
    return hmac.new(IDEMPOTENCY_DOMAIN, key.encode(), hashlib.sha256).hexdigest()[:24]


def _fail(loc: str, field: str, reason: str, code: str = "invalid") -> ApiError:
    return ApiError(422, code, f"{field}: {reason}", [(f"{loc}.{field}", reason)])


def _run_at(body: JobSubmit) -> float | None:
    if body.run_at is None:
        return None
    if isinstance(body.run_at, datetime):
        when = body.run_at if body.run_at.tzinfo else body.run_at.replace(tzinfo=UTC)
        return max(0.0, when.timestamp())  # a time in the past means now
    return float(body.run_at)


def to_request(st: ApiState, body: JobSubmit, loc: str, jid: str | None) -> EnqueueRequest:
    """Check one submitted job against the registry and turn it into an enqueue request."""
    known = set(st.app.registry) | set(st.config.extra_job_types)
    if body.type not in known:
        msg = str(UnknownJobType(body.type, known))
        raise ApiError(422, "unknown_type", msg, [(f"{loc}.type", msg)])
    for first, second in EXCLUSIVE_PAIRS:
        if {first, second} <= body.model_fields_set:
            raise _fail(loc, second, f"give {first} or {second}, not both")
    extra: dict[str, Any] = {}
    spec = st.app.registry.get(body.type)
    declared_unique = bool(spec and spec.options.get("unique"))
    if body.unique_key is None and not declared_unique:
        for name in UNIQUE_FIELDS[1:]:
            if getattr(body, name) is not None:
                raise _fail(loc, name, "needs a unique_key (this job type declares none)")
    for name in UNIQUE_FIELDS:
        value = getattr(body, name)
        if value is None:
            continue
        if not unique_jobs_available():
            raise _fail(loc, name, "unique jobs are not available in this version")
        extra[name] = value
    args = [body.payload] if "payload" in body.model_fields_set else list(body.args or [])
    return EnqueueRequest(body.type, args=args, kwargs=body.kwargs or {}, queue=body.queue,
                          priority=body.priority, delay=body.delay, at=_run_at(body),
                          retry=body.retries, timeout=body.timeout, jid=jid, **extra)


def unique_jobs_available() -> bool:
    """Whether the client honours ``unique_key`` (the flow-control feature)."""
    return "unique_key" in EnqueueRequest.__dataclass_fields__


def _status_of(req: EnqueueRequest) -> str:
    later = (req.delay or 0) > 0 or (isinstance(req.at, float) and req.at > time.time())
    return "scheduled" if later else "enqueued"


def _existing(inspector: Inspector, jid: str) -> JobStatus | None:
    try:
        return inspector.job(jid)
    except JobNotFound:
        return None


def _estimated_bytes(req: EnqueueRequest) -> int:
    """About what a job will take in Redis: its arguments as JSON plus its records."""
    try:
        return len(dumps([req.args, req.kwargs])) + JOB_OVERHEAD_BYTES
    except ConveyorError:
        return JOB_OVERHEAD_BYTES  # not JSON: the client refuses it with a clear error later


def _enqueue(st: ApiState, reqs: list[EnqueueRequest]) -> list[JobAccepted]:
    """Enqueue in one round trip, each job under an enqueue span; a unique job that was
    already there is answered with that job and its state."""
    from .. import tracing

    st.admit_submissions(sum(_estimated_bytes(req) for req in reqs))
    for req in reqs:
        spec = st.app.registry.get(req.name)
        queue = req.queue or (spec.queue if spec else "default")
        with tracing.enqueue_span(req.name, queue) as carrier:
            req.extra = {**(req.extra or {}), **carrier}
    try:
        handles = st.app.client.enqueue_many(reqs)
    except BrokerError:
        raise
    except (ValueError, ConveyorError) as exc:  # refused by the client: bad options
        raise ApiError(422, "invalid", str(exc), [("body", str(exc))]) from None
    out = []
    for req, handle in zip(reqs, handles, strict=True):
        if getattr(handle, "duplicate", False):
            held = _existing(st.inspector, handle.id)
            out.append(JobAccepted(job_id=handle.id, status=held.state if held else "unknown",
                                   duplicate=True))
        else:
            out.append(JobAccepted(job_id=handle.id, status=_status_of(req)))
    return out


@router.post("/jobs", status_code=202, response_model=JobAccepted, summary="Submit a job",
             responses={200: {"model": JobAccepted, "description": "Replay of an earlier "
                                                                   "submit with this key"}})
def submit_job(body: JobSubmit, request: Request, response: Response,
               idempotency_key: IdempotencyKey = None,
               _who: Any = ENQUEUE) -> JobAccepted:
    st = api_state(request)
    jid = derive_jid(idempotency_key) if idempotency_key else None
    req = to_request(st, body, "body", jid)
    if jid is None:
        accepted = _enqueue(st, [req])[0]
    else:
        with st.lock_for(jid):
            earlier = _existing(st.inspector, jid)
            if earlier is not None:
                response.status_code = 200
                return JobAccepted(job_id=jid, status=earlier.state, replayed=True)
            accepted = _enqueue(st, [req])[0]
    if accepted.duplicate:
        response.status_code = 200
    return accepted


@router.post("/jobs/batch", status_code=202, response_model=BatchAccepted,
             summary="Submit many jobs in one round trip (all or none)",
             responses={200: {"model": BatchAccepted, "description": "Replay"}})
def submit_batch(body: BatchSubmit, request: Request, response: Response,
                 idempotency_key: IdempotencyKey = None,
                 _who: Any = ENQUEUE) -> BatchAccepted:
    st = api_state(request)
    jids = [derive_jid(f"{idempotency_key}#{i}") if idempotency_key else None
            for i in range(len(body.jobs))]
    reqs = [to_request(st, job, f"body.jobs[{i}]", jids[i]) for i, job in enumerate(body.jobs)]
    if idempotency_key is None:
        return BatchAccepted(jobs=_enqueue(st, reqs))
    with st.lock_for(str(jids[0])):
        earlier = _existing(st.inspector, str(jids[0]))
        if earlier is not None:
            response.status_code = 200
            found = [_existing(st.inspector, str(j)) for j in jids]
            return BatchAccepted(jobs=[
                JobAccepted(job_id=str(j), status=f.state if f else "expired", replayed=True)
                for j, f in zip(jids, found, strict=True)])
        return BatchAccepted(jobs=_enqueue(st, reqs))


def job_detail(st: ApiState, jid: str) -> JobDetail:
    """A job's status record joined with its entry in the retry, dead or scheduled set."""
    status = _existing(st.inspector, jid)
    wanted = [SET_OF_STATE[status.state]] if status and status.state in SET_OF_STATE else []
    if status is None:
        wanted = ["dead", "retry", "schedule"]
    raw, found_in = None, ""
    for set_name in wanted:
        found = st.inspector.find(set_name, jid)
        if found:
            raw, found_in = found[0], set_name
            break
    if status is None and raw is None:
        raise JobNotFound(f"no job {jid!r} (unknown id, or its status record expired)")
    detail = JobDetail(**(status.__dict__ if status else {"jid": jid, "state": "dead"}))
    if raw is None:
        return detail
    job = loads(raw)
    keys = st.config.redact_keys
    return replace(
        detail,
        args=redact(job.get("args") or [], keys),
        kwargs=redact(job.get("kwargs") or {}, keys),
        name=detail.name or str(job.get("class", "")),
        queue=detail.queue or str(job.get("queue", "")),
        error_class=detail.error_class or str(job.get("error_class", "")),
        error_message=detail.error_message or str(job.get("error_message", "")),
        error_backtrace=_backtrace(job.get("error_backtrace")),
        found_in=found_in,
    )


def _backtrace(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str) and value:
        try:
            return decompress_backtrace(value)
        except (ValueError, zlib.error):
            return []
    return []


@router.get("/jobs/{job_id}", response_model=JobDetail, responses=NOT_FOUND,
            summary="A job's state, attempts, timestamps, error, result and progress")
def get_job(job_id: JobId, request: Request,
            _who: Any = READ) -> JobDetail:
    return job_detail(api_state(request), job_id)


@router.post("/jobs/{job_id}/cancel", response_model=StateChange,
             responses={**NOT_FOUND, 409: _doc("The job already finished")},
             summary="Cancel a queued, scheduled or running job")
def cancel_job(job_id: JobId, request: Request,
               _who: Any = ADMIN) -> StateChange:
    previous = api_state(request).inspector.cancel(job_id)
    if previous in TERMINAL:
        raise ApiError(409, "finished", f"job {job_id} already ended {previous}; nothing to "
                                        "cancel")
    return StateChange(job_id=job_id, previous_state=previous, state="cancelled")


@router.post("/jobs/{job_id}/retry", response_model=StateChange, responses=NOT_FOUND,
             summary="Run a job from the retry, dead or scheduled set now")
def retry_job(job_id: JobId, request: Request,
              _who: Any = ADMIN) -> StateChange:
    st = api_state(request)
    before = _existing(st.inspector, job_id)
    st.inspector.retry_now(job_id)
    return StateChange(job_id=job_id, previous_state=before.state if before else "",
                       state="enqueued")


@router.get("/job-types", response_model=list[JobType], summary="Registered job types")
def job_types(request: Request, _who: Any = READ) -> list[JobType]:
    st = api_state(request)
    out = [JobType(name=s.name, queue=s.queue, retry=s.retry, timeout=s.timeout,
                   executor=s.executor_kind) for s in st.app.registry.values()]
    out += [JobType(name=n, queue="default", retry=True, timeout=None, executor="external")
            for n in st.config.extra_job_types if n not in st.app.registry]
    return sorted(out, key=lambda t: t.name)
