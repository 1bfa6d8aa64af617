"""The quick start and the long-running commands, as a user runs them: ``conveyor demo`` and
``conveyor up`` on the embedded Redis, and a worker driven by OS signals (TSTP, TTIN, TERM).

Every process is started here and stopped by its pid; every embedded server by ``conveyor down``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from redis_server import free_port
from test_cli import APPS, as_json, run

pytestmark = pytest.mark.slow  # each test starts servers and workers as subprocesses
WAIT_S = 60.0
POLL_S = 0.1


def wait_for(predicate: Callable[[], Any], what: str, timeout_s: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(POLL_S)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def spawn(*args: str, cwd: Path, url: str | None, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["PYTHONPATH"] = str(APPS)
    if url:
        env["CONVEYOR_REDIS_URL"] = url
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "conveyor", *args], cwd=cwd, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    return proc.returncode


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    """A project folder whose embedded Redis is stopped at the end, whatever happened."""
    yield tmp_path
    run("down", url=None, cwd=tmp_path, check=False)


def test_demo_runs_on_the_embedded_redis_and_ends_as_expected(folder: Path) -> None:
    proc = run("demo", url=None, cwd=folder, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "demo finished as expected" in proc.stdout
    assert "flaky upload (fails twice): completed after 3 attempt(s)" in proc.stdout
    assert "doomed (ends dead): dead after" in proc.stdout
    assert (folder / ".conveyor").is_dir()  # the embedded server's folder, reused by `down`


def test_up_serves_the_api_runs_jobs_and_promotes_scheduled_ones(folder: Path) -> None:
    port = free_port()
    log = folder / "up.log"
    proc = spawn("up", "--api-port", str(port), "--insecure-local", "-c", "4",
                 cwd=folder, url=None, log=log)
    try:
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, f"`conveyor up` to serve {base}/readyz; log:\n{log.read_text()}")
        now = httpx.post(f"{base}/api/v1/jobs", timeout=5,
                         json={"type": "demo.resize_image", "args": [7]})
        later = httpx.post(f"{base}/api/v1/jobs", timeout=5,
                           json={"type": "demo.resize_image", "args": [8], "delay": 1})
        assert now.status_code == 202 and later.status_code == 202, (now.text, later.text)

        def state(jid: str) -> str:
            return str(httpx.get(f"{base}/api/v1/jobs/{jid}", timeout=5).json()["state"])

        for reply in (now, later):
            jid = reply.json()["job_id"]
            wait_for(lambda jid=jid: state(jid) == "completed", f"job {jid} to complete")
        workers = as_json(run("workers", "--json", url=None, cwd=folder))
        assert len(workers) == 1 and workers[0]["concurrency"] == 4
    finally:
        code = stop(proc)
    assert code == 0, log.read_text()[-3000:]


def test_worker_quiets_on_tstp_dumps_stacks_on_ttin_and_stops_on_term(
        redis_url: str, redis_sync: redis.Redis, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    ledger = os.environ.get("LEDGER_REDIS_URL")
    os.environ["LEDGER_REDIS_URL"] = redis_url
    try:
        proc = spawn("worker", "--app", "ledger_app:app", "-c", "2", cwd=tmp_path,
                     url=redis_url, log=log)
    finally:
        if ledger is None:
            os.environ.pop("LEDGER_REDIS_URL")
        else:
            os.environ["LEDGER_REDIS_URL"] = ledger
    try:
        wait_for(lambda: as_json(run("workers", "--json", url=redis_url)),
                 "the worker to register")
        first = run("enqueue", "work", "--args", "[1]", url=redis_url).stdout.strip()
        wait_for(lambda: as_json(run("job", "show", first, "--json", url=redis_url))["state"]
                 == "completed", "the first job")

        proc.send_signal(signal.SIGTTIN)
        wait_for(lambda: "thread and task stacks:" in log.read_text(), "the stack dump")
        assert "--- thread" in log.read_text()

        proc.send_signal(signal.SIGTSTP)
        wait_for(lambda: as_json(run("workers", "--json", url=redis_url))[0]["quiet"],
                 "the worker to report itself quiet")
        held = run("enqueue", "work", "--args", "[1]", url=redis_url).stdout.strip()
        # A quiet worker fetches nothing: the job must still be waiting a while later. This
        # is the one fixed wait: absence of a fetch cannot be awaited as an event.
        time.sleep(2.0)
        assert as_json(run("job", "show", held, "--json", url=redis_url))["state"] == "enqueued"
        assert redis_sync.llen("queue:default") == 1
    finally:
        code = stop(proc)
    assert code == 0, log.read_text()[-3000:]
    assert "shutting down gracefully" in log.read_text()
    assert redis_sync.llen("queue:default") == 1  # the held job is still there for another worker


def test_retries_ls_lists_a_failed_job_with_its_error(redis_url: str, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    proc = spawn("worker", "--app", "cli_app:app", "-c", "2", cwd=tmp_path, url=redis_url,
                 log=log)
    try:
        jid = run("enqueue", "always_fails", "--args", json.dumps(["disk full"]),
                  url=redis_url).stdout.strip()

        def listed() -> list[dict[str, Any]]:
            rows = as_json(run("retries", "ls", "--json", url=redis_url))
            return [r for r in rows if r.get("jid") == jid]

        rows = wait_for(listed, f"the failed job in the retry set; log:\n{log.read_text()}")
        assert rows[0]["name"] == "always_fails"
        assert (rows[0]["error_class"], rows[0]["error_message"]) == ("RuntimeError", "disk full")
        assert rows[0]["retry_count"] == 0
        assert rows[0]["score"] > time.time() + 3000  # its retry is an hour away
    finally:
        stop(proc)
