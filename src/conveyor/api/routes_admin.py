"""Admin routes: queues, the scheduled/retry/dead sets, workers, stats, health and metrics.

The three sets share one set of routes, made by :func:`_set_routes` for each, so they behave
alike: list with ``type``/``queue`` filters and ``offset``/``limit`` paging (at most
``MAX_PAGE``), ``requeue`` and ``delete`` by ``job_ids`` or ``all``.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..admin import MAX_PAGE, Health, QueueInfo, Stats
from .auth import require
from .config import Scope
from .errors import COMMON_RESPONSES, ApiError, _doc, reject_unknown_query
from .models import (
    Count,
    DailyPoint,
    EntryView,
    History,
    Probe,
    ProcessView,
    QueuedJobView,
    QueueName,
    SetAction,
    entry_view,
    process_view,
    queued_view,
)
from .routes_jobs import api_state

router = APIRouter(prefix="/api/v1", responses=COMMON_RESPONSES,
                   dependencies=[Depends(reject_unknown_query)])
probes = APIRouter(dependencies=[Depends(reject_unknown_query)])
MAX_OFFSET = 1_000_000
SETS = {"scheduled": "schedule", "retries": "retry", "dead": "dead"}
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
QueuePath = Annotated[QueueName, Path()]
Filter = Annotated[str | None, Query(min_length=1, max_length=200)]
READ = Depends(require(Scope.READ))
ADMIN = Depends(require(Scope.ADMIN))


# --- queues --------------------------------------------------------------------------------------
@router.get("/queues", response_model=list[QueueInfo], tags=["queues"],
            summary="Queues with depth, latency (age of the oldest job) and paused state")
def list_queues(request: Request, _who: Any = READ) -> list[QueueInfo]:
    return api_state(request).inspector.queues()


@router.get("/queues/{name:path}/jobs", response_model=list[QueuedJobView], tags=["queues"],
            summary="Jobs waiting in a queue, next to run first")
def queue_jobs(name: QueuePath, request: Request, offset: Offset = 0, limit: Limit = 50,
               _who: Any = READ) -> list[QueuedJobView]:
    st = api_state(request)
    return [queued_view(j, st.config.redact_keys)
            for j in st.inspector.queue_jobs(name, offset, limit)]


def _known_queue(request: Request, name: str) -> None:
    if name not in api_state(request).inspector.queue_names():
        raise ApiError(404, "not_found", f"no queue named {name!r}")


@router.post("/queues/{name:path}/pause", response_model=QueueInfo, tags=["queues"],
             responses={404: _doc("No such queue")}, summary="Stop workers taking its jobs")
def pause_queue(name: QueuePath, request: Request, _who: Any = ADMIN) -> QueueInfo:
    _known_queue(request, name)
    api_state(request).inspector.pause(name)
    return _queue(request, name)


@router.post("/queues/{name:path}/resume", response_model=QueueInfo, tags=["queues"],
             responses={404: _doc("No such queue")}, summary="Let workers take its jobs again")
def resume_queue(name: QueuePath, request: Request, _who: Any = ADMIN) -> QueueInfo:
    _known_queue(request, name)
    api_state(request).inspector.resume(name)
    return _queue(request, name)


@router.post("/queues/{name:path}/purge", response_model=Count, tags=["queues"],
             responses={404: _doc("No such queue")}, summary="Delete every waiting job")
def purge_queue(name: QueuePath, request: Request, _who: Any = ADMIN) -> Count:
    _known_queue(request, name)
    return Count(count=api_state(request).inspector.purge(name))


def _queue(request: Request, name: str) -> QueueInfo:
    return next(q for q in api_state(request).inspector.queues() if q.name == name)


# --- scheduled, retries, dead --------------------------------------------------------------------
def _set_routes(path: str, set_name: str) -> None:
    title = {"schedule": "scheduled jobs", "retry": "jobs waiting to retry",
             "dead": "dead jobs"}[set_name]

    def list_set(request: Request, offset: Offset = 0, limit: Limit = 50,
                 type: Filter = None, queue: Filter = None,
                 _who: Any = READ) -> list[EntryView]:
        st = api_state(request)
        found = st.inspector.entries(set_name, offset, limit, name=type, queue=queue)
        return [entry_view(e, st.config.redact_keys) for e in found]

    def requeue(body: SetAction, request: Request, _who: Any = ADMIN) -> Count:
        return Count(count=api_state(request).inspector.requeue(set_name, _targets(body)))

    def delete(body: SetAction, request: Request, _who: Any = ADMIN) -> Count:
        return Count(count=api_state(request).inspector.delete(set_name, _targets(body)))

    tag: list[str | Enum] = [path]
    router.add_api_route(f"/{path}", list_set, methods=["GET"], response_model=list[EntryView],
                         tags=tag, summary=f"List {title} (filters and paging)",
                         operation_id=f"list_{path}")
    router.add_api_route(f"/{path}/requeue", requeue, methods=["POST"], response_model=Count,
                         tags=tag, summary=f"Move {title} to their queues now",
                         operation_id=f"requeue_{path}")
    router.add_api_route(f"/{path}/delete", delete, methods=["POST"], response_model=Count,
                         tags=tag, summary=f"Delete {title}", operation_id=f"delete_{path}")


def _targets(body: SetAction) -> list[str] | None:
    if body.all == (body.job_ids is not None):
        raise ApiError(422, "invalid", "give job_ids or all: true (one of them)",
                       [("body.job_ids", "give job_ids or all: true, not both or neither")])
    return None if body.all else body.job_ids


for _path, _set in SETS.items():
    _set_routes(_path, _set)


# --- workers and stats ---------------------------------------------------------------------------
@router.get("/workers", response_model=list[ProcessView], tags=["workers"],
            summary="Worker processes with their busy jobs")
def workers(request: Request, _who: Any = READ) -> list[ProcessView]:
    st = api_state(request)
    return [process_view(p, st.config.redact_keys, getattr(p, "executors", None))
            for p in st.inspector.processes()]


@router.get("/stats", response_model=Stats, tags=["stats"], summary="Totals")
def stats(request: Request, _who: Any = READ) -> Stats:
    return api_state(request).inspector.stats()


@router.get("/stats/history", response_model=History, tags=["stats"],
            summary="Processed and failed jobs per second over the last minutes")
def history(request: Request, _who: Any = READ) -> History:
    return api_state(request).history.history()


@router.get("/stats/daily", response_model=list[DailyPoint], tags=["stats"],
            summary="Processed and failed jobs per UTC day")
def daily(request: Request, days: Annotated[int, Query(ge=1, le=90)] = 7,
          _who: Any = READ) -> list[DailyPoint]:
    return [DailyPoint(**d) for d in api_state(request).inspector.history(days)]


@router.get("/health", response_model=Health, tags=["stats"],
            summary="Redis reachability, round trip and configuration warnings")
def health(request: Request, _who: Any = READ) -> Health:
    return api_state(request).inspector.health()


# --- probes and metrics (outside /api/v1) --------------------------------------------------------
@probes.get("/healthz", response_model=Probe, tags=["probes"], summary="The process is up")
def healthz() -> Probe:
    return Probe(status="ok")


@probes.get("/readyz", response_model=Probe, tags=["probes"],
            responses={503: _doc("Redis is unreachable")}, summary="Redis is reachable")
def readyz(request: Request) -> Probe:
    h = api_state(request).inspector.health()
    if not h.ok:
        raise ApiError(503, "redis_unavailable", f"Redis is unreachable: {h.error}",
                       headers={"Retry-After": "5"})
    return Probe(status="ready")


METRICS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
    401: COMMON_RESPONSES[401], 403: COMMON_RESPONSES[403]}


def metrics(request: Request) -> Response:
    """Prometheus metrics; mounted by ``create_app`` with or without the read scope."""
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
