"""The http executor beyond the contract: its sidecar dying mid-job, the breaker, bad sidecars."""

from __future__ import annotations

import asyncio
import http.server
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from conveyor.errors import CircuitOpen, ConfigurationError, JobTimeout, WorkerLost
from conveyor.executors import Task, create_executor
from conveyor.executors._breaker import BreakerState

from . import sidecars
from .helpers import Ctx, pid_alive, until

RESTART_TIMEOUT_S = 30.0


def job(name: str, *args, jid: str, timeout: float | None = None) -> Task:
    return Task(name, list(args), {}, timeout, key=jid, context=Ctx(jid, name))


@pytest.mark.chaos
async def test_killing_the_sidecar_mid_job_loses_nothing(make_executor, tmp_path):
    ex = await make_executor("http", {}, 4, command=sidecars.python_command(),
                             env=sidecars.SIDECAR_ENV, failure_threshold=3, reset_after_s=60)
    jids = [f"job-{i}" for i in range(4)]
    markers = {jid: tmp_path / jid for jid in jids}
    running = [asyncio.ensure_future(ex.run(job("Sleeper", 30, str(markers[j]), jid=j)))
               for j in jids]
    await until(lambda: all(m.exists() for m in markers.values()), what="all four to start")
    victim = ex.supervisor.pid
    os.kill(victim, signal.SIGKILL)
    lost = await asyncio.gather(*running)
    assert all(isinstance(o.error, WorkerLost) for o in lost), [o.message for o in lost]
    assert ex.breaker.opened == 1  # four failures in a row, threshold three
    fast = await ex.run(job("Echo", 1, jid="while-down"))
    assert isinstance(fast.error, CircuitOpen), fast  # fails at once, no call to a dead sidecar
    await until(lambda: ex.stats().restarts == 1 and ex.supervisor.healthy,
                timeout_s=RESTART_TIMEOUT_S, what="the sidecar to come back")
    assert ex.breaker.state is BreakerState.CLOSED  # healthy again: closed without waiting
    assert ex.supervisor.pid != victim and not pid_alive(victim)
    retried = await asyncio.gather(*(ex.run(job("Sleeper", 0.05, jid=f"{j}-retry"))
                                     for j in [*jids, "while-down"]))
    assert [o.value for o in retried] == [0.05] * 5


async def test_calls_to_a_sidecar_that_is_not_there_open_the_circuit(make_executor):
    port = sidecars.free_port()  # nothing listens here
    ex = await make_executor("http", {}, 2, url=f"http://127.0.0.1:{port}", failure_threshold=2)
    first = [await ex.run(job("Echo", jid=f"j{i}")) for i in range(2)]
    assert all(isinstance(o.error, WorkerLost) and "ConnectError" in o.message for o in first)
    third = await ex.run(job("Echo", jid="j3"))
    assert isinstance(third.error, CircuitOpen) and "open after 2 failures" in third.message


class _Broken(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b"upstream exploded"
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def broken_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Broken)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


class _Chunked(http.server.BaseHTTPRequestHandler):
    """Answers like a server that streams: HTTP/1.1, chunked, in two chunks."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        for part in (b'{"status": "ok", ', b'"result": [1, 2]}'):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def chunked_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Chunked)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


async def test_chunked_answers_are_read_and_the_connection_kept(make_executor, chunked_server):
    ex = await make_executor("http", {}, 1, url=chunked_server)
    outcomes = [await ex.run(job("Echo", jid=f"c{i}")) for i in range(3)]
    assert [o.value for o in outcomes] == [[1, 2]] * 3
    assert len(ex._pool._idle) == 1  # one keep-alive connection served all three


async def test_an_answer_outside_the_protocol_is_worker_lost(make_executor, broken_server):
    ex = await make_executor("http", {}, 1, url=broken_server, failure_threshold=5)
    outcome = await ex.run(job("Echo", jid="x"))
    assert isinstance(outcome.error, WorkerLost)
    assert "HTTP 500" in outcome.message and "upstream exploded" in outcome.message
    assert ex.breaker.failures == 1


async def test_the_executor_needs_a_url_or_a_command():
    with pytest.raises(ConfigurationError, match=r"url= .* or command="):
        create_executor("http", {}, 1)


async def test_a_sidecar_that_exits_at_start_is_a_configuration_error():
    ex = create_executor("http", {}, 1, command=[sys.executable, "-c", "raise SystemExit(4)"])
    with pytest.raises(ConfigurationError, match="exited with code 4"):
        await ex.start()


async def test_stop_stops_the_supervised_sidecar():
    ex = create_executor("http", {}, 1, command=sidecars.python_command(),
                         env=sidecars.SIDECAR_ENV)
    await ex.start()
    pid = ex.supervisor.pid
    assert (await ex.run(job("Echo", 1, jid="a"))).ok
    await ex.stop(grace_s=5)
    assert not pid_alive(pid)
    assert (await ex.run(job("Echo", jid="b"))).error_class == "ExecutorClosed"


async def test_a_silent_sidecar_cannot_hold_a_job_without_a_timeout_forever() -> None:
    """Regression: with no job timeout the call waited forever (limit None) on a sidecar that
    accepted the request and never answered; it is now aborted after ``max_call_s``."""
    seen: list[bytes] = []
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        while line := await reader.readline():
            seen.append(line)  # reads requests, never answers a POST
            if line.startswith(b"DELETE"):
                writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ex = create_executor("http", {}, 2, url=f"http://127.0.0.1:{port}", max_call_s=0.5)
    await ex.start()
    try:
        began = time.monotonic()
        outcome = await ex.run(Task("Echo", [1], key="j1"))
        assert isinstance(outcome.error, JobTimeout) and "max_call_s" in outcome.message
        assert time.monotonic() - began < 3 and ex.stats().in_flight == 0
        for _ in range(100):
            if any(line.startswith(b"DELETE /v1/jobs/j1") for line in seen):
                break
            await asyncio.sleep(0.02)
        assert any(line.startswith(b"DELETE /v1/jobs/j1") for line in seen)
    finally:
        await ex.stop(0)
        server.close()
        for writer in writers:
            writer.close()
            await writer.wait_closed()
        await server.wait_closed()
