"""Direction 3: failures look the same on both sides.

The same job fails in a real Sidekiq process and in a Conveyor worker; the retry entries, then
the dead entries, are compared field by field. Sidekiq's API reads our entries and its Web UI
"Retry Now" and "Delete" work on them (byte identity of the member); the entries Sidekiq wrote
are promoted by our poller and requeued or deleted by our dead-set commands.
"""

from __future__ import annotations

import base64
import json
import re
import time
import zlib
from typing import Any

import httpx
import pytest
import redis
from interop_helpers import CORNER_ARGS, Recorder, same_values, wait_until

from conveyor import App, current_job
from conveyor.admin import Inspector
from conveyor.broker import SyncBroker

pytestmark = pytest.mark.interop

FAIL_FLAG = "interop:fail:FailJob"
TIME_FIELDS = {"jid", "created_at", "enqueued_at", "failed_at", "retried_at", "error_backtrace"}
RUBY_BACKTRACE_LINE = re.compile(r"^.+:\d+:in `.+'$")
RUBY_BASE64_LINE_CHARS = 60


def register_fail_job(app: App) -> None:
    @app.job(name="FailJob", queue="py")
    def fail_job(*args: Any) -> None:
        raise RuntimeError("boom")


def entries_by_queue(r: redis.Redis, key: str, n: int) -> dict[str, tuple[dict[str, Any], float]]:
    found = wait_until(lambda: len(r.zrange(key, 0, -1)) >= n and r.zrange(key, 0, -1,
                                                                           withscores=True),
                       30, f"{n} entries in {key}")
    return {json.loads(raw)["queue"]: (json.loads(raw), score) for raw, score in found}


def check_backtrace(value: str) -> list[str]:
    """Sidekiq 6.4's form: Base64.encode64 (60-character lines) of zlib-deflated JSON."""
    lines = value.split("\n")
    assert lines[-1] == "" and all(len(x) == RUBY_BASE64_LINE_CHARS for x in lines[:-2])
    frames = json.loads(zlib.decompress(base64.b64decode(value)))
    assert frames and all(RUBY_BACKTRACE_LINE.match(f) for f in frames)
    return list(frames)


def compare(ruby_entry: dict[str, Any], py_entry: dict[str, Any]) -> None:
    assert sorted(ruby_entry) == sorted(py_entry)
    for key in set(ruby_entry) - TIME_FIELDS - {"queue"}:
        assert same_values(ruby_entry[key], py_entry[key]), key
    for key in TIME_FIELDS & set(ruby_entry) - {"jid", "error_backtrace"}:
        assert isinstance(ruby_entry[key], float) and isinstance(py_entry[key], float), key
    check_backtrace(ruby_entry["error_backtrace"])
    check_backtrace(py_entry["error_backtrace"])


def test_retry_and_dead_entries_match_what_sidekiq_writes(
        app: App, ruby: Any, sidekiq: Any, conveyor: Any, redis_sync: redis.Redis) -> None:
    register_fail_job(app)
    redis_sync.set(FAIL_FLAG, "1")
    sidekiq(["rb"])
    conveyor(app, ["py"])
    job = {"class": "FailJob", "retry": 1, "backtrace": True, "args": [1, "x", {"k": [None]}],
           "custom": {"kept": "ü"}}
    for queue in ("rb", "py"):
        ruby("push", {**job, "queue": queue})

    retries = entries_by_queue(redis_sync, "retry", 2)
    (rb, rb_score), (py, py_score) = retries["rb"], retries["py"]
    compare(rb, py)
    assert rb["retry_count"] == py["retry_count"] == 0
    assert rb["error_class"] == py["error_class"] == "RuntimeError"
    assert rb["error_message"] == py["error_message"] == "boom"
    for entry, score in ((rb, rb_score), (py, py_score)):  # 0**4 + 15 + rand(0..9) * 1
        assert 15 <= score - entry["failed_at"] <= 24 + 1

    for entry in (rb, py):  # run both again now; they fail again and their retries run out
        ruby("entry_action", {"set": "retry", "jid": entry["jid"], "action": "add_to_queue"})
    dead = entries_by_queue(redis_sync, "dead", 2)
    (rb_dead, _), (py_dead, _) = dead["rb"], dead["py"]
    compare(rb_dead, py_dead)
    assert rb_dead["retry_count"] == py_dead["retry_count"] == 1
    assert py_dead["failed_at"] == py["failed_at"] and "retried_at" in py_dead
    assert redis_sync.zcard("retry") == 0

    seen = {e["jid"]: e for e in ruby("entries", {"set": "dead"})}
    assert seen[py["jid"]]["display_class"] == "FailJob"
    assert seen[py["jid"]]["error_backtrace"] == check_backtrace(py_dead["error_backtrace"])


def web_action(client: httpx.Client, page: str, param: str) -> None:
    """Open a Web UI detail page and press one of its buttons (CSRF token included)."""
    html = client.get(page).text
    token = re.search(r"""name=['"]authenticity_token['"] value=['"]([^'"]+)['"]""", html)
    assert token, f"no CSRF token on {page}"
    reply = client.post(page, data={"authenticity_token": token.group(1), param: "1"})
    assert reply.status_code in (200, 302), reply.text[:500]


def entry_pages(client: httpx.Client, listing: str) -> dict[str, str]:
    """jid -> detail page of every entry linked from a Web UI listing (/retries, /morgue)."""
    html = client.get(listing).text
    keys = set(re.findall(rf'href="[^"]*{listing}/([0-9.e+-]+-([0-9a-f]{{24}}))"', html))
    return {jid: f"{listing}/{key}" for key, jid in keys}


def test_web_ui_retry_now_and_delete_work_on_our_entries(
        app: App, web_ui: str, conveyor: Any, redis_sync: redis.Redis) -> None:
    runs = Recorder()

    @app.job(name="PyFailJob", queue="py", retry=3)
    def py_fail(*args: Any) -> None:
        if redis_sync.get(FAIL_FLAG):
            raise RuntimeError("boom ü")
        runs.add({"jid": current_job().jid, "args": list(args),
                  "retry_count": current_job().payload.get("retry_count")})

    redis_sync.set(FAIL_FLAG, "1")
    worker = conveyor(app, ["py"])
    retried = app.enqueue("PyFailJob", args=CORNER_ARGS).id
    deleted = app.enqueue("PyFailJob", args=[*CORNER_ARGS, "other"]).id
    buried = app.enqueue("PyFailJob", args=CORNER_ARGS, retry=0).id
    wait_until(lambda: redis_sync.zcard("retry") == 2 and redis_sync.zcard("dead") == 1,
               what="two retry entries and one dead entry")
    worker.stop()  # keep the retries where they are while the Web UI works on them

    with httpx.Client(base_url=web_ui, follow_redirects=False, timeout=10) as client:
        retries = entry_pages(client, "/retries")
        assert set(retries) == {retried, deleted}
        redis_sync.delete(FAIL_FLAG)
        web_action(client, retries[retried], "retry")
        web_action(client, retries[deleted], "delete")
        morgue = entry_pages(client, "/morgue")
        assert set(morgue) == {buried}
        web_action(client, morgue[buried], "retry")
    assert redis_sync.zcard("retry") == 0 and redis_sync.zcard("dead") == 0
    assert redis_sync.llen("queue:py") == 2

    conveyor(app, ["py"])
    got = {r["jid"]: r for r in runs.wait(2)}
    assert set(got) == {retried, buried}
    assert same_values(got[retried]["args"], CORNER_ARGS)
    assert same_values(got[buried]["args"], CORNER_ARGS)
    assert got[retried]["retry_count"] == -1  # "Retry Now" takes one off, as it does for Ruby


def test_entries_sidekiq_wrote_are_promoted_and_handled_by_conveyor(
        app: App, ruby: Any, sidekiq: Any, conveyor: Any, redis_sync: redis.Redis) -> None:
    runs = Recorder()

    @app.job(name="PyOnlyJob", queue="rb")
    def py_only(tag: str) -> None:
        runs.add({"tag": tag, "attempt": current_job().attempt,
                  "enqueued_at": current_job().payload["enqueued_at"], "at": time.time()})

    ruby_proc = sidekiq(["rb"])
    retried = ruby("push", {"class": "PyOnlyJob", "queue": "rb", "args": ["retried"]})
    requeued = ruby("push", {"class": "PyOnlyJob", "queue": "rb", "args": ["requeued"],
                             "retry": 0})
    deleted = ruby("push", {"class": "PyOnlyJob", "queue": "rb", "args": ["deleted"],
                            "retry": 0})
    wait_until(lambda: redis_sync.zcard("retry") == 1 and redis_sync.zcard("dead") == 2,
               what="Sidekiq to fail the Python-only jobs with NameError")
    ruby_proc.stop()
    raw = redis_sync.zrange("retry", 0, -1)[0]
    entry = json.loads(raw)
    assert entry["error_class"] == "NameError" and entry["jid"] == retried
    stale = entry["enqueued_at"]

    inspector = Inspector(SyncBroker(app.settings.redis_url or "", app.settings))
    assert inspector.requeue("dead", [requeued]) == 1
    assert inspector.delete("dead", [deleted]) == 1
    assert redis_sync.zcard("dead") == 0
    promoted_after = time.time()
    redis_sync.zadd("retry", {raw: promoted_after})  # due now: the same bytes Sidekiq wrote
    conveyor(app, ["rb"])

    got = {r["tag"]: r for r in runs.wait(2)}
    assert set(got) == {"retried", "requeued"}
    assert got["retried"]["attempt"] == 2  # retry_count 0 from Sidekiq: this is the 2nd run
    # our poller gave it a fresh enqueued_at (queue latency), wherever Sidekiq left the key
    assert got["retried"]["enqueued_at"] > stale
    assert got["retried"]["enqueued_at"] >= promoted_after - 0.5
