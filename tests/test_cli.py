"""The ``conveyor`` command as a user runs it (real subprocesses, real Redis)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

APPS = Path(__file__).parent / "apps"


def run(*args: str, url: str | None, cwd: Path | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["PYTHONPATH"] = str(APPS)
    env["COLUMNS"] = "200"
    if url:
        env["CONVEYOR_REDIS_URL"] = url
    proc = subprocess.run([sys.executable, "-m", "conveyor", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(proc.stdout)


def test_enqueue_inspect_cancel_and_list(redis_url: str, redis_sync: redis.Redis) -> None:
    jid = run("enqueue", "work", "--args", "[5]", "--priority", "high",
              url=redis_url).stdout.strip()
    queues = as_json(run("queue", "ls", "--json", url=redis_url))
    assert queues == [{"name": "high", "size": 1, "latency_s": queues[0]["latency_s"],
                       "paused": False}]
    job = as_json(run("job", "show", jid, "--json", url=redis_url))
    assert job["state"] == "enqueued" and job["name"] == "work" and job["queue"] == "high"
    assert "cancelled (was enqueued)" in run("job", "cancel", jid, url=redis_url).stdout
    later = run("enqueue", "work", "--args", "[1]", "--in", "600", url=redis_url).stdout.strip()
    (entry,) = as_json(run("scheduled", "ls", "--json", url=redis_url))
    assert entry["jid"] == later and entry["args"] == [1]
    run("queue", "pause", "high", url=redis_url)
    assert as_json(run("queue", "ls", "--json", url=redis_url))[0]["paused"] is True
    run("queue", "resume", "high", url=redis_url)
    assert "deleted 1 job(s)" in run("queue", "purge", "high", "--yes", url=redis_url).stdout
    stats = as_json(run("stats", "--json", url=redis_url))
    assert stats["scheduled"] == 1 and stats["enqueued"] == 0


def test_dead_set_listing_requeue_and_purge(redis_url: str, redis_sync: redis.Redis) -> None:
    dead = [json.dumps({"retry": 1, "queue": "default", "class": "work", "args": [i],
                        "jid": f"{i:024x}", "error_class": "E", "error_message": "m",
                        "retry_count": 1}) for i in range(3)]
    redis_sync.zadd("dead", {d: 1795000000 + i for i, d in enumerate(dead)})
    listed = as_json(run("dead", "ls", "--json", url=redis_url))
    assert [e["args"] for e in listed] == [[2], [1], [0]]  # newest first
    assert "requeued 1 job(s)" in run("dead", "requeue", f"{1:024x}", url=redis_url).stdout
    assert redis_sync.llen("queue:default") == 1
    assert "deleted 2 job(s)" in run("dead", "purge", "--yes", url=redis_url).stdout
    assert redis_sync.zcard("dead") == 0


def test_retry_command_runs_a_dead_job_now(redis_url: str, redis_sync: redis.Redis) -> None:
    raw = json.dumps({"queue": "low", "class": "work", "args": [], "jid": "ab" * 12})
    redis_sync.zadd("dead", {raw: 1795000000})
    run("job", "retry", "ab" * 12, url=redis_url)
    assert redis_sync.llen("queue:low") == 1 and redis_sync.zcard("dead") == 0


@pytest.mark.parametrize("args,message", [
    (["worker", "--app", "no_such_module:app"], "cannot import 'no_such_module'"),
    (["worker", "--app", "ledger_app:nothing"], "has no attribute 'nothing'"),
    (["worker", "--app", "ledger_app"], "must look like 'package.module:app'"),
    (["enqueue", "work", "--args", "{oops"], "not valid JSON"),
    (["enqueue", "work", "--args", '{"a": 1}'], "must be a JSON array"),
    (["enqueue", "work", "--priority", "urgent"], "priority 'urgent' is not one of"),
    (["job", "show", "nope"], "no job 'nope'"),
])
def test_bad_input_prints_one_clear_line_and_exits_non_zero(redis_url: str, args: list[str],
                                                             message: str) -> None:
    proc = run(*args, url=redis_url, check=False)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_unreachable_redis_is_one_line_and_exit_1() -> None:
    proc = run("queue", "ls", url="redis://127.0.0.1:1/0", check=False)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot reach Redis" in lines[0], proc.stderr
    health = run("health", url="redis://127.0.0.1:1/0", check=False)
    assert health.returncode == 1 and "unhealthy" in health.stderr


@pytest.mark.slow
def test_embedded_default_server_is_started_reused_and_stopped(tmp_path: Path) -> None:
    try:
        first = run("health", "--json", url=None, cwd=tmp_path)
        assert as_json(first)["ok"] and as_json(first)["aof_enabled"]
        jid = run("enqueue", "work", "--args", "[1]", url=None, cwd=tmp_path).stdout.strip()
        shown = as_json(run("job", "show", jid, "--json", url=None, cwd=tmp_path))
        assert shown["state"] == "enqueued"
        assert (tmp_path / ".conveyor").is_dir()
        assert "stopped" in run("down", url=None, cwd=tmp_path).stdout
        # AOF: the job survives the server's restart
        shown = as_json(run("job", "show", jid, "--json", url=None, cwd=tmp_path))
        assert shown["state"] == "enqueued"
    finally:
        run("down", url=None, cwd=tmp_path, check=False)
