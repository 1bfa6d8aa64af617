"""``conveyor limits|breakers|cron|workflow``: the commands, through the admin facade, on a
real Redis (in-process with typer's runner; ``tests/test_cli.py`` covers the subprocess path)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from conveyor import App, EnqueueRequest
from conveyor.cli import _mount_optional, cli
from conveyor.flow import chain
from conveyor.settings import Settings

_mount_optional()


@pytest.fixture
def run(redis_url: str) -> Any:
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        result = runner.invoke(cli, ["--redis-url", redis_url, *args], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        return json.loads(result.output) if "--json" in args else result.output

    return invoke


def test_limits_set_list_and_clear(run: Any, redis_sync: redis.Redis) -> None:
    assert "email: rate 10/1s window; concurrency 3 at once" in run(
        "limits", "set", "email", "--rate", "10/s", "--concurrency", "3")
    rows = run("limits", "ls", "--json")
    assert [(r["job_type"], r["kind"], r["source"], r["usage"]["limit"]) for r in rows] == [
        ("email", "rate", "runtime", 10), ("email", "concurrency", "runtime", 3)]
    assert json.loads(redis_sync.hget("conveyor:flow:policies", "email")) == {
        "rate_limit": [{"limit": 10, "period_s": 1.0, "key": None, "algorithm": "window",
                        "burst": None}],
        "concurrency_limit": [{"limit": 3, "key": None, "recheck_s": 1.0, "poll_s": 0.1}]}
    assert "email: concurrency 3 at once" in run("limits", "set", "email", "--no-rate")
    assert "cleared" in run("limits", "clear", "email")
    assert run("limits", "ls", "--json") == []


def test_breakers_open_list_and_reset(run: Any) -> None:
    assert "pay: open" in run("breakers", "open", "pay", "--for", "30")
    (row,) = run("breakers", "ls", "--json")
    assert row["name"] == "pay" and row["state"] == "open" and 29 < row["retry_in_s"] <= 30
    assert "pay: closed" in run("breakers", "reset", "pay")


def test_cron_add_list_pause_and_remove(run: Any) -> None:
    assert "added nightly: 0 3 * * * (Europe/Paris)" in run(
        "cron", "add", "nightly", "--job", "Backup", "--cron", "0 3 * * *", "--tz",
        "Europe/Paris", "--args", '["full"]')
    (row,) = run("cron", "ls", "--json")
    assert row["job"] == "Backup" and row["args"] == ["full"] and row["enabled"]
    assert row["source"] == "runtime" and row["next_slot"] > 0
    run("cron", "pause", "nightly")
    assert run("cron", "ls", "--json")[0]["enabled"] is False
    run("cron", "resume", "nightly")
    assert "removed" in run("cron", "rm", "nightly")


def test_workflow_show(run: Any, redis_url: str) -> None:
    app = App(settings=Settings(redis_url=redis_url))
    wf = chain(EnqueueRequest("a"), EnqueueRequest("b")).enqueue(app)
    shown = run("workflow", "show", wf.id, "--json")
    assert shown["state"] == "active"
    assert [(n["kind"], n["state"], n["name"]) for n in shown["nodes"]] == [
        ("chain", "active", ""), ("job", "active", "a"), ("job", "pending", "b")]
    app.close()
