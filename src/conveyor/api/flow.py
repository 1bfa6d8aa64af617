"""Flow-control state (rate and concurrency limits, circuit breakers, cron), read-only.

Mounted by ``create_app`` only when the admin facade has ``Inspector.flow`` (the flow-control
feature): ``GET /api/v1/flow`` answers the facade's dataclasses as they are, and ``/flow`` shows
them on the dashboard. Changing limits, breakers and cron entries stays with ``conveyor
limits|breakers|cron`` for now.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from .auth import require
from .config import Scope
from .errors import COMMON_RESPONSES, reject_unknown_query
from .routes_jobs import api_state


class FlowState(BaseModel):
    """Each list holds the facade's records (see ``conveyor.flow.views``) as JSON objects."""

    policies: list[dict[str, Any]]
    limits: list[dict[str, Any]]
    breakers: list[dict[str, Any]]
    cron: list[dict[str, Any]]


def available(inspector: Any) -> bool:
    return hasattr(type(inspector), "flow")


def read_state(inspector: Any) -> FlowState:
    flow = inspector.flow
    rows = {"policies": flow.policies(), "limits": flow.limits(), "breakers": flow.breakers(),
            "cron": flow.cron_entries()}
    return FlowState(**{k: [dataclasses.asdict(r) for r in v] for k, v in rows.items()})


def flow_api(request: Request) -> FlowState:
    return read_state(api_state(request).inspector)


def flow_page(request: Request) -> HTMLResponse:
    from .dashboard import _page, _who

    who = _who(request)
    return _page(request, who, "flow.html", flow=read_state(api_state(request).inspector))


def mount(api: FastAPI) -> None:
    """Add the flow routes when the facade can answer them."""
    router = APIRouter(dependencies=[Depends(reject_unknown_query)])
    router.add_api_route("/api/v1/flow", flow_api, methods=["GET"], response_model=FlowState,
                         tags=["flow"], responses=COMMON_RESPONSES,
                         dependencies=[Depends(require(Scope.READ))],
                         summary="Rate and concurrency limits, circuit breakers and cron entries")
    router.add_api_route("/flow", flow_page, methods=["GET"], include_in_schema=False)
    api.include_router(router)
