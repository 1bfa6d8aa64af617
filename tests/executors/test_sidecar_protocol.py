"""docs/sidecar-protocol.md, checked against both sidecars over plain HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from . import sidecars
from .helpers import until

KINDS = ["python", "ruby"]
MAX_REQUEST_BYTES = 16 * 1024 * 1024


@pytest.fixture(scope="module", params=KINDS)
def server(request: pytest.FixtureRequest) -> Iterator[sidecars.SidecarServer]:
    if request.param == "ruby":
        sidecars.require_ruby()
    command = sidecars.python_command if request.param == "python" else sidecars.ruby_command
    port = sidecars.free_port()
    server = sidecars.SidecarServer.start(command(port), port)
    yield server
    server.stop()


@pytest.fixture
async def client(server) -> httpx.AsyncClient:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


def post(client: httpx.AsyncClient, body: object):
    return client.post("/v1/jobs", json=body)


async def test_health_names_the_protocol_and_jobs(client):
    reply = await client.get("/v1/health")
    assert reply.status_code == 200
    body = reply.json()
    assert body["status"] == "ok" and body["protocol"] == 1
    assert isinstance(body["pid"], int) and "Echo" in body["jobs"]


async def test_a_job_runs_and_answers_ok_or_error(client):
    ok = await post(client, {"jid": "p1", "class": "Echo", "args": [1, "a"],
                             "kwargs": {"k": True}, "queue": "default", "attempt": 1})
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("application/json")
    assert ok.json()["status"] == "ok" and ok.json()["result"] == [[1, "a"], {"k": True}]
    assert ok.json()["jid"] == "p1"
    failed = (await post(client, {"jid": "p2", "class": "Boom", "args": ["no"]})).json()
    assert failed["status"] == "error" and failed["error_message"] == "no"
    assert failed["error_class"] in ("ValueError", "ArgumentError")
    assert failed["backtrace"] and all(isinstance(line, str) for line in failed["backtrace"])


@pytest.mark.parametrize("body, field", [
    ("not json", "JSON"), ([], "object"), ({"args": []}, "class"),
    ({"class": "Echo", "args": "x"}, "args"), ({"class": "Echo", "args": [], "kwargs": 3},
                                               "kwargs"),
])
async def test_a_request_that_is_not_a_job_is_refused_with_400(client, body, field):
    reply = await (client.post("/v1/jobs", content=body) if isinstance(body, str)
                   else post(client, body))
    assert reply.status_code == 400
    assert reply.json()["error_class"] == "BadRequest" and field in reply.json()["error_message"]


async def test_an_unknown_job_type_is_404(client):
    reply = await post(client, {"jid": "u1", "class": "Kernel", "args": []})
    assert reply.status_code == 404
    assert reply.json()["error_class"] == "UnknownJobType" and "Echo" in reply.text


async def test_a_body_over_the_limit_is_413(client):
    reply = await client.post("/v1/jobs", content=b" " * (MAX_REQUEST_BYTES + 1))
    assert reply.status_code == 413


async def test_the_same_jid_while_running_is_409_and_delete_cancels_it(client, tmp_path):
    marker = tmp_path / "started"
    first = asyncio.ensure_future(post(client, {"jid": "dup", "class": "Sleeper",
                                                "args": [30, str(marker)]}))
    await until(marker.exists, what="the job to start")
    again = await post(client, {"jid": "dup", "class": "Echo", "args": []})
    assert again.status_code == 409 and again.json()["error_class"] == "JobAlreadyRunning"
    cancel = await client.delete("/v1/jobs/dup")
    assert cancel.status_code == 202
    answer = (await first).json()
    assert answer["status"] == "error" and answer["error_class"] == "Cancelled"
    assert (await client.delete("/v1/jobs/dup")).status_code == 404


async def test_a_repeated_delivery_is_replayed_not_rerun(client):
    body = {"jid": "r1", "class": "Interval", "args": [0.01], "attempt": 1}
    first = await post(client, body)
    second = await post(client, body)
    assert second.json() == first.json()
    assert second.headers.get("conveyor-replayed") == "true"
    retried = await post(client, {**body, "attempt": 2})
    assert "conveyor-replayed" not in retried.headers
    assert retried.json()["result"] != first.json()["result"]


async def test_the_timeout_in_the_request_is_enforced(client):
    reply = await post(client, {"jid": "t1", "class": "Sleeper", "args": [30], "timeout": 0.2})
    assert reply.json()["status"] == "error" and reply.json()["error_class"] == "JobTimeout"


@pytest.mark.parametrize("kind", KINDS)
def test_a_supervised_sidecar_exits_when_its_stdin_closes(kind):
    if kind == "ruby":
        sidecars.require_ruby()
    port = sidecars.free_port()
    command = (sidecars.python_command if kind == "python" else sidecars.ruby_command)(port)
    env = {**os.environ, **sidecars.SIDECAR_ENV, "CONVEYOR_SIDECAR_WATCH_STDIN": "1"}
    proc = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stdin is not None
        proc.stdin.close()  # what the worker's death does
        assert proc.wait(sidecars.STARTUP_TIMEOUT_S) is not None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_the_python_sidecar_refuses_an_app_it_cannot_load():
    import sys

    proc = subprocess.run([sys.executable, "-m", "conveyor.sidecar", "--app", "no_such_module:app"],
                          capture_output=True, text=True, timeout=sidecars.STARTUP_TIMEOUT_S,
                          check=False)
    assert proc.returncode == 1
    assert "cannot import 'no_such_module'" in proc.stderr
