"""Direction 4: Sidekiq's API and its 6.4.1 Web UI see a running Conveyor worker.

The worker shows in ``Sidekiq::ProcessSet`` and on ``/busy`` with its queues, concurrency and
busy jobs (from ``<identity>:workers``, the 6.4.1 key; ``<identity>:work``, the 6.4.2+ key,
holds the same entries); ``Sidekiq::Stats`` counters move; and the Web UI's Quiet and Stop reach
the worker through ``<identity>-signals``.
"""

from __future__ import annotations

import html
import json
import re
import threading
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis
from interop_helpers import ConveyorThread, wait_until

from conveyor import App, activejob

pytestmark = pytest.mark.interop


def process_of(ruby: Any, identity: str, **expect: Any) -> dict[str, Any] | None:
    """Our entry in Sidekiq::ProcessSet once it has the expected values, else None."""
    for proc in ruby("processes"):
        if proc["identity"] == identity and all(proc.get(k) == v for k, v in expect.items()):
            return dict(proc)
    return None


def press(client: httpx.Client, page: str, data: dict[str, str]) -> None:
    """Submit a form of a Web UI page, with the CSRF token the page carries."""
    token = re.search(r"""name=['"]authenticity_token['"] value=['"]([^'"]+)['"]""",
                      client.get(page).text)
    assert token, f"no CSRF token on {page}"
    reply = client.post(page, data={"authenticity_token": token.group(1), **data})
    assert reply.status_code in (200, 302), reply.text[:500]


def test_process_set_workset_web_ui_and_stats_see_a_conveyor_worker(
        app: App, ruby: Any, web_ui: str, conveyor: Any, redis_sync: redis.Redis) -> None:
    release = threading.Event()

    @app.job(name="SlowPyJob", queue="py")
    def slow(n: int) -> int:
        release.wait(30)
        return n

    @activejob.job(app, "SlowAjJob", queue="py2")
    def slow_aj(n: int) -> None:
        release.wait(30)

    @app.job(name="BadPyJob", queue="py", retry=False)
    def bad() -> None:
        raise ValueError("bad")

    before = ruby("stats")
    worker: ConveyorThread = conveyor(app, ["py", "py2"], concurrency=7)
    ident = worker.worker.identity
    jids = {app.enqueue("SlowPyJob", args=[1]).id,
            activejob.enqueue(app, "SlowAjJob", 2, queue="py2").id}
    proc = wait_until(lambda: process_of(ruby, ident, busy=2), what="busy=2 in ProcessSet")
    assert proc["queues"] == ["py", "py2"] and proc["concurrency"] == 7
    assert proc["quiet"] == "false" and proc["pid"] > 0 and isinstance(proc["started_at"], float)
    assert "conveyor" in proc["labels"]

    work = [w for w in ruby("workset") if w[0] == ident]
    assert {w[2]["payload"]["jid"] for w in work} == jids
    assert all(isinstance(w[2]["run_at"], int) for w in work)
    old, new = (redis_sync.hgetall(f"{ident}:{k}") for k in ("workers", "work"))
    assert len(old) == 2 and old == new

    with httpx.Client(base_url=web_ui, timeout=10) as client:
        busy = html.unescape(client.get("/busy").text)
    host, pid = proc["hostname"], proc["pid"]
    row = busy[busy.index(f"{host}:{pid}"):]
    assert re.search(r"Queues: </b>\s*py, py2", row)
    assert re.search(r"<td>7</td>\s*<td>2</td>", row)  # threads, busy
    for jid in jids:
        assert jid in busy
    assert "SlowPyJob" in busy and "SlowAjJob" in busy  # the ActiveJob wrapper is unwrapped

    app.enqueue("BadPyJob")
    release.set()
    wait_until(lambda: process_of(ruby, ident, busy=0), what="the jobs to finish")
    stats = wait_until(lambda: (s := ruby("stats"))["processed"] >= before["processed"] + 3
                       and s, what="stat:processed to count 3 more")
    assert stats["failed"] == before["failed"] + 1  # processed counts failures too, as Sidekiq
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert int(redis_sync.get(f"stat:processed:{today}") or 0) >= 3
    assert 0 < redis_sync.ttl(f"stat:processed:{today}") <= 5 * 365 * 24 * 3600


def test_quiet_and_stop_from_the_web_ui(app: App, ruby: Any, web_ui: str, conveyor: Any,
                                        redis_sync: redis.Redis) -> None:
    @app.job(name="PyJob", queue="py")
    def py_job() -> None:
        pass

    worker: ConveyorThread = conveyor(app, ["py"])
    ident = worker.worker.identity
    wait_until(lambda: process_of(ruby, ident), what="the worker in ProcessSet")
    with httpx.Client(base_url=web_ui, timeout=10) as client:
        press(client, "/busy", {"identity": ident, "quiet": "1"})
        wait_until(lambda: process_of(ruby, ident, quiet="true"), what='quiet "true"')
        assert worker.worker.quiet
        app.enqueue("PyJob")
        beats = worker.worker.heartbeat.beats
        wait_until(lambda: worker.worker.heartbeat.beats >= beats + 3, what="three more beats")
        assert redis_sync.llen("queue:py") == 1  # quiet: nothing fetched
        assert "quiet" in html.unescape(client.get("/busy").text)

        press(client, "/busy", {"identity": ident, "stop": "1"})
        wait_until(lambda: not worker.running, what="the worker to stop")
    assert not redis_sync.sismember("processes", ident)
    assert redis_sync.llen("queue:py") == 1  # the waiting job is still there
    assert json.loads(redis_sync.lindex("queue:py", 0))["class"] == "PyJob"
