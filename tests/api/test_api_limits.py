"""Body limits (T11) and the request deadline against slow clients (T12), over real sockets."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from api_helpers import ADMIN, config, running_api

from conveyor import App
from conveyor.api import BackgroundServer, create_app

DEADLINE_S = 1.0
SLACK_S = 1.0  # scheduling slack allowed past the deadline on a loaded machine
TRICKLE_PAUSE_S = 0.2
SLOW_CLIENTS = 20


def _connect(server: BackgroundServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def test_declared_oversized_body_is_refused_before_it_is_sent(job_app: App) -> None:
    with running_api(job_app, max_body_bytes=4096) as server:
        sock = _connect(server)
        started = time.monotonic()
        sock.sendall(b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + ADMIN.encode() + b"\r\n"
                     b"Content-Length: 10485760\r\n\r\n")
        reply = _read_all(sock)
        elapsed = time.monotonic() - started
        sock.close()
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"too_large" in reply
    assert elapsed < 1.0, "the 413 must not wait for the body"


def test_chunked_body_over_the_limit_is_refused(job_app: App) -> None:
    with running_api(job_app, max_body_bytes=2048) as server:
        sock = _connect(server)
        chunk = b"3e8\r\n" + b" " * 1000 + b"\r\n"
        sock.sendall(b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + ADMIN.encode() + b"\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 3)
        reply = _read_all(sock)
        sock.close()
    assert reply.startswith(b"HTTP/1.1 413"), reply[:300]


def test_body_just_under_the_limit_is_read(job_app: App) -> None:
    limit = 4096
    with running_api(job_app, max_body_bytes=limit) as server:
        filler = "x" * (limit - 60)
        body = f'{{"type": "echo", "args": ["{filler}"]}}'.encode()
        assert len(body) <= limit
        r = httpx.post(server.url + "/api/v1/jobs", content=body,
                       headers={"Authorization": f"Bearer {ADMIN}",
                                "Content-Type": "application/json"})
        assert r.status_code == 202, r.text
        r = httpx.post(server.url + "/api/v1/jobs", content=body + b" " * 100,
                       headers={"Authorization": f"Bearer {ADMIN}",
                                "Content-Type": "application/json"})
        assert r.status_code == 413


class Trickler(threading.Thread):
    """A slowloris client: sends ``head`` and then one byte every TRICKLE_PAUSE_S, and records
    when the server closed the connection (None if it never did within ``give_up_s``)."""

    def __init__(self, port: int, head: bytes, give_up_s: float) -> None:
        super().__init__(daemon=True)
        self.port, self.head, self.give_up_s = port, head, give_up_s
        self.opened = 0.0
        self.closed_after: float | None = None
        self.reply = b""

    def run(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=TRICKLE_PAUSE_S)
        self.opened = time.monotonic()
        try:
            sock.sendall(self.head)
            while time.monotonic() - self.opened < self.give_up_s:
                try:
                    data = sock.recv(4096)
                except TimeoutError:
                    sock.sendall(b"X")
                    continue
                self.reply += data
                if not data:
                    self.closed_after = time.monotonic() - self.opened
                    return
        except (ConnectionResetError, BrokenPipeError):
            self.closed_after = time.monotonic() - self.opened
        finally:
            sock.close()


def _probe(server: BackgroundServer, stop: threading.Event, latencies: list[float],
           failures: list[str]) -> None:
    with httpx.Client(base_url=server.url, timeout=5) as c:
        while not stop.is_set():
            started = time.monotonic()
            try:
                r = c.get("/healthz")
                if r.status_code != 200:
                    failures.append(str(r.status_code))
            except httpx.HTTPError as exc:
                failures.append(repr(exc))
            latencies.append(time.monotonic() - started)
            stop.wait(0.05)


@pytest.fixture
def deadline_api(job_app: App) -> Iterator[BackgroundServer]:
    with running_api(job_app, receive_deadline_s=DEADLINE_S) as server:
        yield server


HEADERS_TRICKLE = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
BODY_TRICKLE = (b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 5000\r\n\r\n{")


@pytest.mark.slow  # must wait out the deadline on purpose: that is what it measures
@pytest.mark.parametrize("head", [HEADERS_TRICKLE, BODY_TRICKLE], ids=["headers", "body"])
def test_slow_clients_are_cut_at_the_deadline_while_others_are_served(
        deadline_api: BackgroundServer, head: bytes) -> None:
    stop = threading.Event()
    latencies: list[float] = []
    failures: list[str] = []
    probe = threading.Thread(target=_probe, args=(deadline_api, stop, latencies, failures))
    slow = [Trickler(deadline_api.port, head, give_up_s=DEADLINE_S * 5) for _ in
            range(SLOW_CLIENTS)]
    probe.start()
    for t in slow:
        t.start()
    for t in slow:
        t.join()
    stop.set()
    probe.join()
    held = [t.closed_after for t in slow]
    assert all(h is not None for h in held), f"some slow connections were never closed: {held}"
    assert max(h for h in held if h) <= DEADLINE_S + SLACK_S, held
    assert min(h for h in held if h) >= DEADLINE_S * 0.9, held
    if head is HEADERS_TRICKLE:
        assert all(t.reply.startswith(b"HTTP/1.1 408") for t in slow)
    assert not failures, failures
    assert len(latencies) > 10 and max(latencies) < 1.0


@pytest.mark.slow  # paces a client on purpose, just inside the deadline
def test_a_slow_but_timely_request_is_served(job_app: App) -> None:
    """Sending a request in pieces within the deadline is fine, twice on one connection (the
    deadline starts again with each request)."""
    deadline_s = 2.0
    with running_api(job_app, receive_deadline_s=deadline_s) as server:
        sock = _connect(server)
        for _ in range(2):
            for piece in (b"GET /healthz HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
                sock.sendall(piece)
                time.sleep(deadline_s / 5)  # 3 pieces: 60% of the deadline per request
            reply = sock.recv(65536)
            assert reply.startswith(b"HTTP/1.1 200"), reply
        sock.close()


@pytest.mark.slow  # waits past the deadline to show plain uvicorn keeps the connection
def test_without_the_deadline_protocol_uvicorn_holds_a_trickling_client(job_app: App) -> None:
    """The control: the same trickle against uvicorn's own protocol is never cut, so the
    tests above measure our deadline and not some other timeout."""
    asgi = create_app(config(), job_app)
    server = BackgroundServer(uvicorn.Server(uvicorn.Config(
        asgi, host="127.0.0.1", port=0, http="h11", lifespan="on", log_level="warning")))
    server.start()
    try:
        t = Trickler(server.port, HEADERS_TRICKLE, give_up_s=DEADLINE_S * 3)
        t.start()
        t.join()
    finally:
        server.stop()
    assert t.closed_after is None
