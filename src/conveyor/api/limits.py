"""HTTP guards: a body limit, a deadline for receiving requests, and security headers.

* :class:`BodyLimitMiddleware` answers 413 from ``Content-Length`` before reading a byte of the
  body, and counts the bytes of bodies without a length (chunked), failing once they pass the
  limit. Its 413 closes the connection so the rest of a huge body is never read.
* :class:`DeadlineH11Protocol` is uvicorn's h11 protocol with a deadline: from the first byte of
  a request (or from the connection's opening) to its last byte. uvicorn has none of its own:
  its keep-alive timer stops at the first byte, so a client trickling one byte at a time could
  hold a connection for ever (slowloris). When the deadline passes, the connection is closed
  (with a 408 when no request line was parsed yet). Idle kept-alive connections are left to
  uvicorn's keep-alive timeout.
* :class:`SecurityHeadersMiddleware` puts a strict Content-Security-Policy (no inline script or
  style, no framing) and the usual hardening headers on every answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import h11
import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("conveyor.api")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make browsers send Origin: null
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"interest-cohort=()"),
]
STATIC_CACHE = b"public, max-age=300"
REQUEST_DONE_STATES = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR)
TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\n"
                    b"connection: close\r\ncontent-length: 40\r\n\r\n"
                    b"the request was not received in time.\r\n\r\n")


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the limit of {limit} bytes",
                         headers={"Connection": "close"})


async def _send_error(send: Send, status: int, text: str) -> None:
    code = "too_large" if status == 413 else "bad_request"
    body = orjson.dumps({"error": code, "message": text, "fields": []})
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes``: by declared length first, then by counting."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _send_error(send, 400, "Content-Length is not a number")
                return
            if int(declared) > self.max_bytes:
                await _send_error(send, 413, f"the request body is larger than the limit of "
                                             f"{self.max_bytes} bytes")
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counted, send)


class SecurityHeadersMiddleware:
    """Add the CSP and hardening headers; no-store for everything but static files."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                if b"cache-control" not in present:
                    headers.append((b"cache-control", STATIC_CACHE if static else b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline for receiving each whole request."""

    receive_deadline_s: float = 15.0
    on_cut: Callable[[str], None] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state in REQUEST_DONE_STATES:
            self._disarm()
        elif self._deadline is None:
            self._arm()  # the first bytes of a new request on a kept-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.receive_deadline_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        headers_pending = (self.conn.their_state is h11.IDLE and self.cycle is None) or (
            self.conn.their_state is h11.IDLE and self.cycle.response_complete)
        reason = "headers" if headers_pending else "body"
        log.info("closed a connection from %s: the request %s did not arrive within %.1fs",
                 self.client, reason, self.receive_deadline_s)
        if self.on_cut is not None:
            self.on_cut(reason)
        if headers_pending:
            self.transport.write(TIMEOUT_RESPONSE)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()


def deadline_protocol(deadline_s: float,
                      on_cut: Callable[[str], None] | None = None) -> type[DeadlineH11Protocol]:
    """A protocol class bound to one deadline and cut counter (uvicorn takes a class)."""
    return type("BoundDeadlineH11Protocol", (DeadlineH11Protocol,),
                {"receive_deadline_s": deadline_s, "on_cut": staticmethod(on_cut) if on_cut
                 else None})
