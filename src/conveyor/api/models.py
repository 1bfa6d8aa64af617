"""Request and response bodies of the REST API (pydantic), and the views built from the facade.

The facade's dataclasses are answered as they are where they carry nothing sensitive
(``QueueInfo``, ``Stats``, ``Health``, ``JobStatus``). Entries of the sets, queued jobs and busy
jobs carry job arguments, so they are turned into views here: the raw JSON is dropped and every
argument goes through :func:`conveyor.logs.redact`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..admin import ProcessInfo, QueuedJob, SetEntry
from ..job import loads
from ..logs import redact

MAX_DELAY_S = 5 * 365 * 24 * 3600.0
MAX_EPOCH_S = 32503680000.0  # year 3000, for epoch numbers
MAX_TIMEOUT_S = 7 * 24 * 3600.0
MAX_RETRIES = 100
MAX_NAME_CHARS = 200
NAME_PATTERN = r"^[^\s,]+$"
JOB_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,100}$"

def _json_integer(value: Any) -> Any:
    """JSON Schema's integer: 3 and 3.0 are integers; true and "3" are not."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be an integer")
        return int(value)
    return value

JobId = Annotated[str, Field(pattern=JOB_ID_PATTERN, examples=["b0a9ef4c2f6e4b1c8d3e2a10"])]
QueueName = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS, pattern=NAME_PATTERN)]


EXCLUSIVE_PAIRS = (("payload", "args"), ("queue", "priority"), ("delay", "run_at"))
UNIQUE_FIELDS = ("unique_key", "unique_ttl", "unique_scope")


class JobSubmit(BaseModel):
    """A job to enqueue. Give ``payload`` (one JSON argument, Gopher's shape) or ``args``
    (and ``kwargs``); ``queue`` or ``priority``; ``delay`` or ``run_at``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "allOf": [{"not": {"required": list(pair)}} for pair in EXCLUSIVE_PAIRS],
        "dependentRequired": {"unique_ttl": ["unique_key"], "unique_scope": ["unique_key"]}})

    type: str = Field(min_length=1, max_length=MAX_NAME_CHARS, examples=["email"])
    payload: Any = Field(None, description="One JSON value, passed as the single argument")
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    queue: QueueName | None = None
    priority: Literal["high", "normal", "low"] | None = None
    retries: int | None = Field(None, ge=0, le=MAX_RETRIES)
    delay: float | None = Field(None, ge=0, le=MAX_DELAY_S, allow_inf_nan=False, strict=True)
    run_at: datetime | Annotated[float, Field(ge=0, le=MAX_EPOCH_S, allow_inf_nan=False,
                                              strict=True)] | None = Field(
        None, description="ISO 8601 time (UTC when no offset) or epoch seconds; a time in "
        "the past runs at once")
    unique_key: str = Field(None, min_length=1, max_length=MAX_NAME_CHARS,  # type: ignore[assignment]
                                   description="While a job holds this key, another submit "
                                   "with it returns that job (unique jobs)")
    unique_ttl: float | None = Field(None, ge=1, le=MAX_DELAY_S, allow_inf_nan=False,
                                     strict=True, description="Seconds the unique lock lasts")
    unique_scope: Literal["queued", "running", "completed"] | None = Field(
        None, description="Until when the unique lock is held")
    timeout: float | None = Field(None, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False, strict=True)

    @field_validator("retries", mode="before")
    @classmethod
    def _integer(cls, value: Any) -> Any:
        return None if value is None else _json_integer(value)

    @field_validator("run_at", mode="before")
    @classmethod
    def _epoch_in_range(cls, value: Any) -> Any:
        """Numbers are epoch seconds in 0..MAX_EPOCH_S (pydantic would read any number as a
        datetime); booleans are not times."""
        if isinstance(value, bool) or (isinstance(value, int | float) and not
                                       0 <= value <= MAX_EPOCH_S):
            raise ValueError(f"epoch seconds must be between 0 and {MAX_EPOCH_S:.0f}")
        return value


class BatchSubmit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobs: list[JobSubmit] = Field(min_length=1, max_length=1000)


class JobAccepted(BaseModel):
    """``replayed``: an earlier submit with this Idempotency-Key; ``duplicate``: a job already
    held this ``unique_key``, and ``job_id`` is that job."""

    job_id: str
    status: str
    replayed: bool = False
    duplicate: bool = False


class BatchAccepted(BaseModel):
    jobs: list[JobAccepted]


class SetAction(BaseModel):
    """Which entries to act on: the listed ``job_ids``, or ``all``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [
        {"required": ["job_ids"], "properties": {"all": {"const": False}}},
        {"required": ["all"], "properties": {"all": {"const": True}},
         "not": {"required": ["job_ids"]}}]})

    job_ids: list[JobId] = Field(None, min_length=1, max_length=1000)  # type: ignore[arg-type]
    all: bool = False


class Count(BaseModel):
    count: int


class StateChange(BaseModel):
    job_id: str
    previous_state: str
    state: str


class JobType(BaseModel):
    name: str
    queue: str
    retry: bool | int
    timeout: float | None
    executor: str


class EntryView(BaseModel):
    """A job in the scheduled, retry or dead set, arguments redacted."""

    set: str
    score: float
    job_id: str
    type: str
    queue: str
    args: list[Any]
    kwargs: dict[str, Any] = {}
    retry_count: int | None = None
    error_class: str = ""
    error_message: str = ""


class QueuedJobView(BaseModel):
    queue: str
    job_id: str
    type: str
    args: list[Any]
    kwargs: dict[str, Any] = {}
    enqueued_at: float | None = None


class BusyJob(BaseModel):
    job_id: str
    type: str
    queue: str
    args: list[Any]
    run_at: float | None = None


class ProcessView(BaseModel):
    identity: str
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int
    busy: int
    utilisation: float
    beat: float
    quiet: bool
    rss_kb: int
    started_at: float
    labels: list[str]
    executors: list[str] = []
    jobs: list[BusyJob]


class HistoryPoint(BaseModel):
    """Jobs counted between the previous sample and ``t`` (epoch seconds), and their rates."""

    t: float
    processed: int
    failed: int
    processed_per_s: float
    failed_per_s: float


class History(BaseModel):
    interval_s: float
    points: list[HistoryPoint]


class DailyPoint(BaseModel):
    date: str
    processed: int
    failed: int


class Probe(BaseModel):
    status: str
    error: str = ""


def _kwargs_of(raw: str) -> dict[str, Any]:
    try:
        job = loads(raw)
    except ValueError:
        return {}
    kwargs = job.get("kwargs") if isinstance(job, dict) else None
    return kwargs if isinstance(kwargs, dict) else {}


def entry_view(e: SetEntry, keys: frozenset[str] | None) -> EntryView:
    return EntryView(set=e.set, score=e.score, job_id=e.jid, type=e.name, queue=e.queue,
                     args=redact(e.args, keys), kwargs=redact(_kwargs_of(e.raw), keys),
                     retry_count=e.retry_count if isinstance(e.retry_count, int) else None,
                     error_class=e.error_class, error_message=e.error_message)


def queued_view(j: QueuedJob, keys: frozenset[str] | None) -> QueuedJobView:
    enq = j.enqueued_at if isinstance(j.enqueued_at, int | float) else None
    return QueuedJobView(queue=j.queue, job_id=j.jid, type=j.name, args=redact(j.args, keys),
                         kwargs=redact(_kwargs_of(j.raw), keys), enqueued_at=enq)


def _busy(entry: dict[str, Any], keys: frozenset[str] | None) -> BusyJob:
    payload = entry.get("payload")
    job = payload if isinstance(payload, dict) else {}
    args = job.get("args")
    run_at = entry.get("run_at")
    return BusyJob(job_id=str(job.get("jid", entry.get("tid", ""))), type=str(job.get("class", "")),
                   queue=str(entry.get("queue", "")),
                   args=redact(args if isinstance(args, list) else [], keys),
                   run_at=float(run_at) if isinstance(run_at, int | float) else None)


def process_view(p: ProcessInfo, keys: frozenset[str] | None,
                 executors: list[str] | None = None) -> ProcessView:
    util = round(p.busy / p.concurrency, 4) if p.concurrency else 0.0
    return ProcessView(identity=p.identity, hostname=p.hostname, pid=p.pid, queues=p.queues,
                       concurrency=p.concurrency, busy=p.busy, utilisation=util, beat=p.beat,
                       quiet=p.quiet, rss_kb=p.rss_kb, started_at=p.started_at, labels=p.labels,
                       executors=executors or [], jobs=[_busy(j, keys) for j in p.jobs])
