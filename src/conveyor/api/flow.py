"""Flow control in the REST API and on the dashboard's ``/flow`` page.

Mounted by ``create_app`` only when the admin facade has ``Inspector.flow`` (the flow-control
feature). Everything goes through that facade (``conveyor.flow.admin``); no route here issues a
Redis command itself, and the facade's dataclasses are answered as they are.

* Reads (``read`` scope): ``GET /api/v1/flow`` (policies, limits with their use, breakers, cron
  entries), workflows and their nodes, unique locks, and what flow control did to one job
  (``/flow/jobs/{job_id}/deferral``).
* Changes (``admin`` scope), the same as ``conveyor limits|cron|breakers``: set or clear a job
  type's run-time rate limit and concurrency limit (workers apply it within
  ``POLICY_REFRESH_S``), add or remove a cron entry, reset a breaker. A body the facade refuses
  is a 422 naming the field; an unknown cron entry or breaker is a 404.

The request bodies live here rather than in ``models.py``: they are flow control's own.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import ConfigurationError, UnknownJobType
from ..flow.cron import EXPRESSION_PATTERN, MIN_INTERVAL_S, CronEntry
from ..flow.cron import NAME_PATTERN as CRON_NAME_PATTERN
from ..flow.keytemplate import TEMPLATE_PATTERN
from ..flow.ratelimit import TEXT_PATTERN
from ..flow.views import (
    BreakerInfo,
    CronInfo,
    Deferral,
    PolicyInfo,
    UniqueLock,
    WorkflowInfo,
    WorkflowSummary,
)
from .auth import require
from .config import Scope
from .errors import COMMON_RESPONSES, NOT_FOUND, ApiError, _doc, reject_unknown_query
from .models import MAX_NAME_CHARS, NAME_PATTERN, JobId, _json_integer
from .routes_jobs import api_state

READ = Depends(require(Scope.READ))
ADMIN = Depends(require(Scope.ADMIN))
LIST_DEFAULT = 50
LIST_MAX = 500
MAX_CONCURRENCY = 100_000
MAX_EVERY_S = 366 * 86400.0
TIME_ZONES = frozenset(available_timezones())
TIME_ZONE_ENUM: dict[str, Any] = {"enum": sorted(TIME_ZONES)}
JobTypePath = Annotated[str, Path(min_length=1, max_length=MAX_NAME_CHARS, pattern=NAME_PATTERN)]
NamePath = Annotated[str, Path(min_length=1, max_length=MAX_NAME_CHARS)]
WorkflowId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._:-]{1,100}$")]
Limit = Annotated[int, Query(ge=1, le=LIST_MAX)]
KeyTemplateField = Field(None, min_length=1, max_length=MAX_NAME_CHARS,
                         pattern=TEMPLATE_PATTERN, description=(
    "Key template the limit is counted per, e.g. tenant:{args.tenant_id}; default: the job type"))


class FlowState(BaseModel):
    """Each list holds the facade's records (see ``conveyor.flow.views``) as JSON objects."""

    policies: list[dict[str, Any]]
    limits: list[dict[str, Any]]
    breakers: list[dict[str, Any]]
    cron: list[dict[str, Any]]


class RateLimitSet(BaseModel):
    """A run-time rate limit for a job type (replaces the declared one)."""

    model_config = ConfigDict(extra="forbid")

    rate: str | None = Field(..., min_length=1, max_length=100, pattern=TEXT_PATTERN,
                             examples=["10/s"], description=(
        "'10/s', '100/m', '5/2s', '10/s bucket 30'; null: no rate limit at all"))
    key: str | None = KeyTemplateField


class ConcurrencyLimitSet(BaseModel):
    """A run-time concurrency limit for a job type (replaces the declared one)."""

    model_config = ConfigDict(extra="forbid")

    limit: int | None = Field(..., ge=1, le=MAX_CONCURRENCY, strict=True, examples=[3],
                              description="Jobs running at once; null: no concurrency limit")
    key: str | None = KeyTemplateField

    @field_validator("limit", mode="before")
    @classmethod
    def _integer(cls, value: Any) -> Any:
        return None if value is None else _json_integer(value)


class CronAdd(BaseModel):
    """A periodic job added at run time (replaces an entry of the same name). Give ``cron``
    or ``every_s``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "oneOf": [{"required": ["cron"]}, {"required": ["every_s"]}]})

    name: str = Field(max_length=MAX_NAME_CHARS, pattern=CRON_NAME_PATTERN,
                      examples=["nightly-report"])
    job: str = Field(min_length=1, max_length=MAX_NAME_CHARS, description="The job type")
    cron: str = Field(None, max_length=2000, pattern=EXPRESSION_PATTERN,  # type: ignore[assignment]
                      examples=["0 3 * * *"], description="A cron expression (5 fields, or 6 "
                      "with seconds last); days 29-31 only with every month")
    every_s: float = Field(None, ge=MIN_INTERVAL_S, le=MAX_EVERY_S,  # type: ignore[assignment]
                           allow_inf_nan=False, strict=True, description="An interval instead")
    tz: str = Field("UTC", max_length=100, json_schema_extra=TIME_ZONE_ENUM)
    queue: str = Field("default", min_length=1, max_length=MAX_NAME_CHARS, pattern=NAME_PATTERN)
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    catch_up: Literal["one", "all", "none"] = "one"

    @field_validator("every_s", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        """JSON numbers: 30 and 30.5 alike (strict mode would refuse the integer)."""
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value

    @field_validator("tz")
    @classmethod
    def _zone(cls, value: str) -> str:
        if value not in TIME_ZONES:
            raise ValueError(f"unknown time zone {value!r}; use an IANA name like Europe/Paris")
        return value


class Removed(BaseModel):
    name: str
    removed: bool


# which field a ConfigurationError of CronEntry is about, by the words of its message
CRON_ERROR_FIELDS = (("give cron= or every_s=", "cron"), ("time zone", "tz"),
                     ("every_s", "every_s"), ("cron expression", "cron"),
                     ("catch_up", "catch_up"), ("entry name", "name"))


UNKNOWN_TYPE: dict[int | str, dict[str, Any]] = {404: _doc("No such job type")}


def available(inspector: Any) -> bool:
    return hasattr(type(inspector), "flow")


def _flow(request: Request) -> Any:
    return api_state(request).inspector.flow


def _invalid(field: str, exc: Exception) -> ApiError:
    return ApiError(422, "invalid", f"{field}: {exc}", [(field, str(exc))])


# --- reads ---------------------------------------------------------------------------------------
def read_state(inspector: Any) -> FlowState:
    flow = inspector.flow
    rows = {"policies": flow.policies(), "limits": flow.limits(), "breakers": flow.breakers(),
            "cron": flow.cron_entries()}
    return FlowState(**{k: [dataclasses.asdict(r) for r in v] for k, v in rows.items()})


def flow_api(request: Request, _who: Any = READ) -> FlowState:
    return read_state(api_state(request).inspector)


def list_workflows(request: Request, limit: Limit = LIST_DEFAULT,
                   _who: Any = READ) -> list[WorkflowSummary]:
    result: list[WorkflowSummary] = _flow(request).workflows(limit)
    return result


def get_workflow(wf_id: WorkflowId, request: Request, _who: Any = READ) -> WorkflowInfo:
    result: WorkflowInfo = _flow(request).workflow(wf_id)
    return result


def list_unique_locks(request: Request, limit: Limit = LIST_DEFAULT,
                      _who: Any = READ) -> list[UniqueLock]:
    result: list[UniqueLock] = _flow(request).unique_locks(limit)
    return result


def get_unique_lock(name: NamePath, request: Request, _who: Any = READ) -> UniqueLock:
    result: UniqueLock = _flow(request).unique_lock(name)
    return result


def get_deferral(job_id: JobId, request: Request, _who: Any = READ) -> Deferral:
    result: Deferral = _flow(request).deferral(job_id)
    return result


# --- changes -------------------------------------------------------------------------------------
def set_rate_limit(job_type: JobTypePath, body: RateLimitSet, request: Request,
                   _who: Any = ADMIN) -> PolicyInfo:
    from ..flow.ratelimit import RateLimit

    if body.rate is None:
        value = None
    else:
        try:
            value = RateLimit.parse(body.rate).to_json()
        except ConfigurationError as exc:
            raise _invalid("body.rate", exc) from None
        value["key"] = body.key
    return _set(request, job_type, "rate_limit", value)


def set_concurrency_limit(job_type: JobTypePath, body: ConcurrencyLimitSet, request: Request,
                          _who: Any = ADMIN) -> PolicyInfo:
    value = None if body.limit is None else {"limit": body.limit, "key": body.key}
    return _set(request, job_type, "concurrency_limit", value)


def _set(request: Request, job_type: str, option: str, value: Any) -> PolicyInfo:
    _known_type(request, job_type)
    try:
        info: PolicyInfo = _flow(request).set_policy(job_type, **{option: value})
    except ConfigurationError as exc:  # the key template: the only part the model cannot check
        raise _invalid("body.key", exc) from None
    return info


def _clearer(option: str) -> Any:
    def clear(job_type: JobTypePath, request: Request, _who: Any = ADMIN) -> PolicyInfo:
        _known_type(request, job_type)
        info: PolicyInfo = _flow(request).clear_override(job_type, option)
        return info

    clear.__name__ = f"clear_{option}"  # the OpenAPI operation id
    return clear


def _known_types(request: Request) -> set[str]:
    """Job types the API knows: registered, ``--job-type`` extras, or with a flow policy
    (declared by a running worker's app, or set at run time)."""
    st = api_state(request)
    return (set(st.app.registry) | set(st.config.extra_job_types)
            | {p.job_type for p in st.inspector.flow.policies()})


def _known_type(request: Request, job_type: str) -> None:
    if job_type not in _known_types(request):
        raise ApiError(404, "not_found", f"no job type {job_type!r} is known here (registered, "
                       "--job-type, or with a flow policy)")


def add_cron(body: CronAdd, request: Request, _who: Any = ADMIN) -> CronInfo:
    st = api_state(request)
    known = _known_types(request)
    if body.job not in known:
        msg = str(UnknownJobType(body.job, known))
        raise ApiError(422, "unknown_type", msg, [("body.job", msg)])
    try:
        entry = CronEntry(body.name, body.job, cron=body.cron, every_s=body.every_s, tz=body.tz,
                          args=body.args, kwargs=body.kwargs, queue=body.queue,
                          catch_up=body.catch_up)
    except ConfigurationError as exc:
        field = next((f for words, f in CRON_ERROR_FIELDS if words in str(exc)), "body")
        raise _invalid(f"body.{field}" if field != "body" else field, exc) from None
    try:
        entry.next_slot(round(time.time() * 1000))
    except Exception as exc:  # croniter: a date that never comes
        raise _invalid("body.cron", ValueError(f"{body.cron!r} never fires ({exc})")) from None
    info: CronInfo = st.inspector.flow.add_cron(entry)
    return info


def remove_cron(name: NamePath, request: Request, _who: Any = ADMIN) -> Removed:
    if not _flow(request).remove_cron(name):
        raise ApiError(404, "not_found", f"no cron entry named {name!r}")
    return Removed(name=name, removed=True)


def reset_breaker(name: NamePath, request: Request, _who: Any = ADMIN) -> BreakerInfo:
    flow = _flow(request)
    if name not in {b.name for b in flow.breakers()}:
        raise ApiError(404, "not_found", f"no circuit breaker named {name!r}")
    info: BreakerInfo = flow.reset_breaker(name)
    return info


def flow_page(request: Request) -> HTMLResponse:
    from .dashboard import _page, _who

    who = _who(request)
    inspector = api_state(request).inspector
    return _page(request, who, "flow.html", flow=read_state(inspector),
                 workflows=inspector.flow.workflows(LIST_DEFAULT),
                 unique_locks=inspector.flow.unique_locks(LIST_DEFAULT))


ROUTES: list[tuple[str, str, Any, Any, str, dict[int | str, dict[str, Any]]]] = [
    ("GET", "", flow_api, FlowState,
     "Rate and concurrency limits, circuit breakers and cron entries", {}),
    ("GET", "/workflows", list_workflows, list[WorkflowSummary],
     "Workflows still on record (chains and groups), newest first", {}),
    ("GET", "/workflows/{wf_id}", get_workflow, WorkflowInfo,
     "A workflow with every node's state and outcome", NOT_FOUND),
    ("GET", "/unique-locks", list_unique_locks, list[UniqueLock],
     "Unique locks held now, with the job holding each", {}),
    ("GET", "/unique-locks/{name:path}", get_unique_lock, UniqueLock,
     "One unique lock by its key", NOT_FOUND),
    ("GET", "/jobs/{job_id}/deferral", get_deferral, Deferral,
     "How flow control held a job back: deferrals, last reason, admission", NOT_FOUND),
    ("POST", "/limits/{job_type}/rate", set_rate_limit, PolicyInfo,
     "Set a job type's rate limit at run time (null: none)", UNKNOWN_TYPE),
    ("POST", "/limits/{job_type}/rate/clear", _clearer("rate_limit"), PolicyInfo,
     "Drop the run-time rate limit: the declared one applies again", UNKNOWN_TYPE),
    ("POST", "/limits/{job_type}/concurrency", set_concurrency_limit, PolicyInfo,
     "Set a job type's concurrency limit at run time (null: none)", UNKNOWN_TYPE),
    ("POST", "/limits/{job_type}/concurrency/clear", _clearer("concurrency_limit"), PolicyInfo,
     "Drop the run-time concurrency limit: the declared one applies again", UNKNOWN_TYPE),
    ("POST", "/cron", add_cron, CronInfo, "Add (or replace) a periodic job at run time", {}),
    ("POST", "/cron/{name:path}/remove", remove_cron, Removed, "Remove a periodic job",
     NOT_FOUND),
    ("POST", "/breakers/{name:path}/reset", reset_breaker, BreakerInfo,
     "Close a circuit breaker by hand", NOT_FOUND),
]


def _describe_cron_jobs(api: FastAPI) -> None:
    """Make ``CronAdd.job`` an enum of the registered job types in /openapi.json (as
    ``JobSubmit.type`` is), so generated clients and fuzzers send types that exist."""
    build = api.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        st = api.state.api
        props = schema.get("components", {}).get("schemas", {}).get("CronAdd", {})
        types = sorted(set(st.app.registry) | set(st.config.extra_job_types))
        if types and "properties" in props:
            props["properties"]["job"]["enum"] = types
        return schema

    api.openapi = openapi  # type: ignore[method-assign]


def mount(api: FastAPI) -> None:
    """Add the flow routes when the facade can answer them."""
    router = APIRouter(dependencies=[Depends(reject_unknown_query)])
    for method, path, endpoint, model, summary, responses in ROUTES:
        router.add_api_route(f"/api/v1/flow{path}", endpoint, methods=[method],
                             response_model=model, tags=["flow"], summary=summary,
                             responses={**COMMON_RESPONSES, **responses})
    router.add_api_route("/flow", flow_page, methods=["GET"], include_in_schema=False)
    api.include_router(router)
    _describe_cron_jobs(api)
