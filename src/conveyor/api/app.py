"""Builds the ASGI application: REST API under ``/api/v1``, probes, metrics and the dashboard.

Layers, outermost first: security headers, the body limit, CORS (only when origins are
configured), request metrics, then FastAPI's routing with the error handlers of ``errors.py``.
The deadline for receiving requests lives lower, in the HTTP protocol (``limits.py``), because
an ASGI app only sees a request once its headers have arrived.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..admin import Inspector
from ..app import App
from ..metrics import AdminCollector, ApiMetrics
from . import dashboard, errors, flow, routes_admin, routes_jobs
from .auth import Authenticator, require
from .config import API_REDIS_TIMEOUT_S, ApiConfig
from .config import Scope as AuthScope
from .limits import BodyLimitMiddleware, SecurityHeadersMiddleware
from .models import UNIQUE_FIELDS
from .render import WEB_DIR
from .routes_jobs import unique_jobs_available
from .state import ApiState, ThroughputHistory

CORS_MAX_AGE_S = 600


class RequestMetricsMiddleware:
    """Counts and times each request under its route template (``/api/v1/jobs/{job_id}``)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            route = getattr(scope.get("route"), "path", None)
            if route is not None:
                route = route.replace(":path}", "}")
            else:
                route = "/static" if scope["path"].startswith("/static/") else "unmatched"
            self.metrics.observe(scope["method"], route, status, time.perf_counter() - started)


def _describe_jobs_in_schema(api: FastAPI, types: set[str]) -> None:
    """Make ``JobSubmit.type`` an enum of the registered types in /openapi.json, so clients
    (and Schemathesis) know which values are valid, and leave out ``unique_key`` while the
    client cannot honour it."""
    build = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema:
            return api.openapi_schema
        schema = build()
        props = schema["components"]["schemas"]["JobSubmit"]["properties"]
        if types:
            props["type"]["enum"] = sorted(types)
        if not unique_jobs_available():
            for name in UNIQUE_FIELDS:
                props.pop(name, None)
            schema["components"]["schemas"]["JobSubmit"].pop("dependentRequired", None)
        return schema

    api.openapi = openapi  # type: ignore[method-assign]


def create_app(config: ApiConfig, app: App | None = None) -> FastAPI:
    """The API and dashboard for ``app`` (its registry and Redis settings) under ``config``."""
    config.check()
    application = app or App()
    # Answer 503 quickly instead of waiting on a Redis that does not answer (issue 9, F6).
    application.settings = application.settings.with_(
        redis_timeout_s=min(application.settings.redis_timeout_s, API_REDIS_TIMEOUT_S))
    inspector = Inspector(application.client.sync)
    state = ApiState(config, application, inspector, Authenticator(config),
                     ThroughputHistory(config.history_sample_s))
    registry = CollectorRegistry()
    registry.register(AdminCollector(inspector))
    api_metrics = ApiMetrics(registry)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        sampler = asyncio.create_task(state.sample_forever(stop))
        try:
            yield
        finally:
            stop.set()
            await sampler

    api = FastAPI(title="Conveyor", version=__version__, docs_url=None, redoc_url=None,
                  lifespan=lifespan, description="Background jobs: submit, inspect and "
                  "administer queues. Authenticate with `Authorization: Bearer <token>`.")
    api.state.api = state
    api.state.auth = state.auth
    api.state.registry = registry
    api.state.metrics = api_metrics
    errors.install(api)
    api.include_router(routes_jobs.router)
    api.include_router(routes_admin.router)
    api.include_router(routes_admin.probes)
    metrics_deps = [] if config.metrics_public else [Depends(require(AuthScope.READ))]
    api.add_api_route("/metrics", routes_admin.metrics, methods=["GET"], tags=["probes"],
                      dependencies=metrics_deps, response_class=Response,
                      responses=routes_admin.METRICS_RESPONSES, summary="Prometheus metrics")
    api.include_router(dashboard.router)
    if flow.available(inspector):
        flow.mount(api)
    api.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")
    _describe_jobs_in_schema(api, set(application.registry) | set(config.extra_job_types))
    api.add_middleware(RequestMetricsMiddleware, metrics=api_metrics)
    if config.cors_origins:
        api.add_middleware(CORSMiddleware, allow_origins=config.cors_origins,
                           allow_methods=["GET", "POST"], allow_credentials=False,
                           allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
                           max_age=CORS_MAX_AGE_S)
    api.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    api.add_middleware(SecurityHeadersMiddleware)
    return api
