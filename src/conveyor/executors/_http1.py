"""A small keep-alive HTTP/1.1 client pool for talking to one sidecar, on asyncio streams.

Why not ``httpx.AsyncClient``: measured on the benchmark machine (bench/executors/RESULTS.md),
httpx spent about 1 ms of client CPU per call one at a time, 1.5 ms at 32 calls in flight and
12 ms at 200 (its connection pool's bookkeeping grows with the number of waiting requests), which
capped the http executor at a few hundred jobs per second, below what one sidecar can serve. The
sidecar protocol needs very little of HTTP: one host, ``POST``/``GET``/``DELETE`` with a JSON
body, ``Content-Length`` or chunked responses, keep-alive. That fits here in a few dozen lines.

At most ``size`` connections are open; a call takes an idle connection (the most recently used,
so that idle ones expire) or opens one. A connection the server closed while idle is noticed by
its end-of-stream and dropped before reuse; one idle longer than ``idle_expiry_s`` is closed
(the protocol asks servers to keep idle connections for at least 60 s). Any failure closes the
connection and raises :class:`HttpFailure`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024  # bounded memory: a sidecar answer larger than this is refused


class HttpFailure(Exception):
    """The call did not produce an HTTP response (connect, write, read or parse failed)."""


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass(eq=False)
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    last_used: float = field(default_factory=time.monotonic)

    def close(self) -> None:
        self.writer.close()


class Http1Pool:
    """Keep-alive connections to ``host:port``; at most ``size`` at once."""

    def __init__(self, host: str, port: int, size: int, *, connect_timeout_s: float,
                 idle_expiry_s: float, headers: dict[str, str] | None = None) -> None:
        self.host, self.port = host, port
        self.connect_timeout_s = connect_timeout_s
        self.idle_expiry_s = idle_expiry_s
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._fixed_headers = f"Host: {host}:{port}\r\n{extra}"
        self._slots = asyncio.Semaphore(size)
        self._idle: deque[_Conn] = deque()

    async def request(self, method: str, path: str, body: bytes = b"") -> HttpResponse:
        async with self._slots:
            conn = self._take_idle() or await self._connect()
            try:
                response, keep = await self._roundtrip(conn, method, path, body)
            except BaseException as exc:
                conn.close()
                if isinstance(exc, OSError | asyncio.IncompleteReadError | ValueError):
                    raise HttpFailure(f"{type(exc).__name__}: {exc or 'connection lost'}") from exc
                raise
            if keep:
                conn.last_used = time.monotonic()
                self._idle.append(conn)
            else:
                conn.close()
            return response

    def _take_idle(self) -> _Conn | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.reader.at_eof() or now - conn.last_used > self.idle_expiry_s:
                conn.close()
                continue
            return conn
        return None

    async def _connect(self) -> _Conn:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, limit=MAX_HEADER_BYTES),
                self.connect_timeout_s)
        except (OSError, TimeoutError) as exc:
            raise HttpFailure(f"ConnectError: cannot connect to {self.host}:{self.port}: "
                              f"{exc or type(exc).__name__}") from exc
        return _Conn(reader, writer)

    async def _roundtrip(self, conn: _Conn, method: str, path: str,
                         body: bytes) -> tuple[HttpResponse, bool]:
        head = (f"{method} {path} HTTP/1.1\r\n{self._fixed_headers}"
                f"Content-Length: {len(body)}\r\n\r\n")
        conn.writer.write(head.encode("latin-1") + body)
        await conn.writer.drain()
        raw = await conn.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        status = int(rest[:3])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        data = await self._body(conn.reader, headers)
        connection = headers.get("connection", "").lower()
        framed = "content-length" in headers or "transfer-encoding" in headers
        keep = framed and connection != "close" and (
            version == "HTTP/1.1" or connection == "keep-alive")
        return HttpResponse(status, headers, data), keep

    async def _body(self, reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size > MAX_BODY_BYTES:
                    raise ValueError(f"a chunk of {size} bytes is over the limit")
                if size == 0:
                    await _skip_trailer(reader)
                    return b"".join(parts)
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
        if "content-length" in headers:
            length = int(headers["content-length"])
            if length > MAX_BODY_BYTES:
                raise ValueError(f"a body of {length} bytes is over the limit")
            return await reader.readexactly(length)
        return await reader.read(MAX_BODY_BYTES)

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


async def _skip_trailer(reader: asyncio.StreamReader) -> None:
    while (await reader.readuntil(b"\r\n")) != b"\r\n":
        pass
