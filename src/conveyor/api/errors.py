"""Every error the API answers with has one JSON shape: ``{error, message, fields}``.

``fields`` names each offending field (``body.jobs[2].type``) with the reason, so a client can
fix its request without guessing. Client mistakes are 4xx; an unreachable Redis is 503 with
``Retry-After``; nothing a client sends may produce a 500. Pages of the dashboard get the same
errors as a small escaped HTML page instead of JSON.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import BrokerError, JobNotFound, SerializationError, UnknownJobType

log = logging.getLogger("conveyor.api")
RETRY_AFTER_S = 5
JSON_PREFIXES = ("/api/", "/healthz", "/readyz", "/metrics", "/openapi.json")


class FieldError(BaseModel):
    field: str
    reason: str


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx answer."""

    error: str
    message: str
    fields: list[FieldError] = []


class ApiError(Exception):
    """An error answer: HTTP status, a short code, a message and the fields at fault."""

    def __init__(self, status: int, code: str, message: str,
                 fields: list[tuple[str, str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or []
        self.headers = headers or {}


def _doc(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _doc("The body is not valid JSON"),
    401: _doc("No valid credentials"),
    403: _doc("The credentials do not allow this, or a cross-site request was refused"),
    413: _doc("The request body is larger than the limit"),
    422: _doc("A field is missing or invalid; `fields` names it"),
    503: _doc("Redis is unreachable, or nearly full (`redis_full`); retry after `Retry-After` "
              "seconds"),
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _doc("No such job, queue entry or route")}


def reject_unknown_query(request: Request) -> None:
    """A dependency refusing query parameters the route does not declare (a typo such as
    ``?limt=5`` would otherwise be ignored silently)."""
    root = getattr(request.scope.get("route"), "dependant", None)
    if root is None:
        return
    stack: list[Any] = [root]
    known: set[str] = set()
    while stack:
        dependant = stack.pop()
        known.update(p.alias for p in dependant.query_params)
        stack.extend(dependant.dependencies)
    unknown = sorted(k for k in request.query_params if k not in known)
    if unknown:
        allowed = ", ".join(sorted(known)) or "none"
        raise ApiError(422, "invalid", f"unknown query parameter {unknown[0][:40]!r}; this "
                       f"route takes: {allowed}",
                       [(f"query.{k[:40]}", "not a parameter of this route") for k in unknown])


def _render(request: Request, err: ApiError) -> Response:
    path = request.url.path
    headers = dict(err.headers)
    if not path.startswith(JSON_PREFIXES):
        from .dashboard import error_page

        return HTMLResponse(error_page(request, err.status, err.message), err.status,
                            headers=headers)
    body = ErrorBody(error=err.code, message=err.message,
                     fields=[FieldError(field=f, reason=r) for f, r in err.fields])
    return JSONResponse(body.model_dump(), err.status, headers=headers)


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def validation_error(exc: RequestValidationError) -> ApiError:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        reason = next(str(e.get("msg")) for e in errors if e.get("type") == "json_invalid")
        return ApiError(400, "bad_json", f"the body is not valid JSON: {reason}",
                        [("body", reason)])
    fields = [(_loc(e.get("loc", ())), str(e.get("msg", "invalid"))) for e in errors]
    first = fields[0] if fields else ("body", "invalid")
    return ApiError(422, "invalid", f"{first[0]}: {first[1]}", fields)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every known failure into its 4xx/503 answer."""

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> Response:
        return _render(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return _render(request, validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _render(request, ApiError(exc.status_code, code, str(exc.detail),
                                         headers=dict(exc.headers or {})))

    @app.exception_handler(JobNotFound)
    async def _missing(request: Request, exc: JobNotFound) -> Response:
        return _render(request, ApiError(404, "not_found", str(exc)))

    @app.exception_handler(UnknownJobType)
    async def _unknown(request: Request, exc: UnknownJobType) -> Response:
        return _render(request, ApiError(422, "unknown_type", str(exc), [("type", str(exc))]))

    @app.exception_handler(SerializationError)
    async def _serial(request: Request, exc: SerializationError) -> Response:
        return _render(request, ApiError(422, "invalid", str(exc), [("args", str(exc))]))

    async def _down(request: Request, exc: Exception) -> Response:
        log.warning("Redis unavailable during %s %s: %s", request.method, request.url.path, exc)
        return _render(request, ApiError(503, "redis_unavailable",
                                         f"Redis is unavailable ({type(exc).__name__}); retry "
                                         "shortly", headers={"Retry-After": str(RETRY_AFTER_S)}))

    for kind in (redis.RedisError, BrokerError, ConnectionError):
        app.add_exception_handler(kind, _down)
