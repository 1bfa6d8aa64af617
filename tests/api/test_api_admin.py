"""Queues, sets, workers, stats, health and the security defaults of the API."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from api_helpers import ADMIN, READ, WorkerThread, client, make_app, running_api, wait_until

from conveyor import App
from conveyor.admin import Inspector
from conveyor.api import BackgroundServer
from conveyor.api.config import ApiConfig, parse_token
from conveyor.errors import ConfigurationError
from conveyor.testing import drain


@pytest.fixture
def c(api: BackgroundServer) -> Iterator[httpx.Client]:
    with client(api, ADMIN) as c:
        yield c


def test_queues_list_jobs_pause_resume_purge(c: httpx.Client, job_app: App) -> None:
    ids = [job_app.enqueue("echo", args=[i, {"api_key": "k-123"}]).id for i in range(5)]
    assert c.get("/api/v1/queues").json()[0] | {"latency_s": 0} == {
        "name": "default", "size": 5, "latency_s": 0, "paused": False}
    page = c.get("/api/v1/queues/default/jobs", params={"offset": 1, "limit": 2}).json()
    assert [j["job_id"] for j in page] == ids[1:3]
    assert page[0]["args"] == [1, {"api_key": "[redacted]"}]
    assert c.get("/api/v1/queues/default/jobs", params={"limit": 501}).status_code == 422
    assert c.post("/api/v1/queues/default/pause").json()["paused"] is True
    assert c.post("/api/v1/queues/default/resume").json()["paused"] is False
    assert c.post("/api/v1/queues/default/purge").json() == {"count": 5}
    assert c.post("/api/v1/queues/nope/pause").status_code == 404


def test_paused_queue_is_not_worked(c: httpx.Client, job_app: App) -> None:
    job_app.enqueue("echo")
    c.post("/api/v1/queues/default/pause")
    with WorkerThread(job_app, concurrency=2):
        job_app.enqueue("echo", queue="high")
        wait_until(lambda: Inspector(job_app.client.sync).queues()[1].size == 0,
                   what="the high queue to drain")
        assert next(q for q in c.get("/api/v1/queues").json() if q["name"] == "default")[
            "size"] == 1
        c.post("/api/v1/queues/default/resume")
        wait_until(lambda: Inspector(job_app.client.sync).stats().enqueued == 0,
                   what="default to drain after resume")


def _dead(app: App, n: int, kind: str = "boom", queue: str | None = None) -> list[str]:
    ids = [app.enqueue(kind, args=[f"fail {i}"], queue=queue).id for i in range(n)]
    drain(app)
    return ids


def test_sets_filter_page_requeue_and_delete(c: httpx.Client, job_app: App) -> None:
    ids = _dead(job_app, 4) + _dead(job_app, 2, queue="slow")
    everything = c.get("/api/v1/dead", params={"limit": 500}).json()
    assert {e["job_id"] for e in everything} == set(ids)
    other = c.get("/api/v1/dead", params={"queue": "slow"}).json()
    assert {e["job_id"] for e in other} == set(ids[4:])
    assert c.get("/api/v1/dead", params={"type": "echo"}).json() == []
    first = c.get("/api/v1/dead", params={"limit": 2}).json()
    second = c.get("/api/v1/dead", params={"limit": 2, "offset": 2}).json()
    assert len(first) == 2 and not {e["job_id"] for e in first} & {e["job_id"] for e in second}
    assert first[0]["error_class"] == "ValueError"
    assert c.post("/api/v1/dead/requeue", json={"job_ids": ids[:2]}).json() == {"count": 2}
    assert c.post("/api/v1/dead/delete", json={"job_ids": [ids[2]]}).json() == {"count": 1}
    assert c.post("/api/v1/dead/delete", json={"job_ids": ["0" * 24]}).json() == {"count": 0}
    assert c.post("/api/v1/dead/requeue", json={"all": True}).json() == {"count": 3}
    ins = Inspector(job_app.client.sync)
    assert ins.set_size("dead") == 0 and ins.stats().enqueued == 5


@pytest.mark.parametrize("body", [{}, {"all": True, "job_ids": ["a"]}, {"job_ids": []},
                                  {"job_ids": ["bad id!"]}, {"all": "yes please"}])
def test_set_actions_need_ids_or_all(c: httpx.Client, body: dict[str, object]) -> None:
    r = c.post("/api/v1/retries/delete", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["fields"]


def test_delete_all_and_retries_list(c: httpx.Client, job_app: App) -> None:
    _dead(job_app, 3)
    assert c.get("/api/v1/retries").json() == []
    assert c.post("/api/v1/dead/delete", json={"all": True}).json() == {"count": 3}


def test_workers_show_busy_jobs_with_redacted_args(c: httpx.Client, job_app: App) -> None:
    job_app.enqueue("slow", args=[1.5], kwargs={})
    job_app.enqueue("echo", args=[{"token": "t-999"}], queue="slow", delay=0)
    with WorkerThread(job_app, concurrency=3) as worker:
        procs = wait_until(lambda: [p for p in c.get("/api/v1/workers").json() if p["jobs"]],
                           what="a busy worker")
        p = procs[0]
        assert p["identity"] == worker.identity and p["concurrency"] == 3
        assert p["utilisation"] == pytest.approx(p["busy"] / 3, abs=1e-3)
        assert {j["type"] for j in p["jobs"]} <= {"slow", "echo"}
        assert "t-999" not in c.get("/api/v1/workers").text


def test_stats_history_daily_and_health(api: BackgroundServer, job_app: App) -> None:
    with client(api, READ) as c:
        for i in range(20):
            job_app.enqueue("echo", args=[i])
        with WorkerThread(job_app, concurrency=5):
            wait_until(lambda: c.get("/api/v1/stats").json()["processed"] == 20,
                       what="20 jobs processed")
            points = wait_until(
                lambda: [p for p in c.get("/api/v1/stats/history").json()["points"]
                         if p["processed_per_s"] > 0], what="a non-zero rate in the history")
        assert sum(p["processed_per_s"] for p in points) > 0
        history = wait_until(lambda: (h := c.get("/api/v1/stats/history").json()) and sum(
            p["processed"] for p in h["points"]) == 20 and h, what="all 20 in the history")
        assert history["interval_s"] == 0.2
        daily = c.get("/api/v1/stats/daily", params={"days": 2}).json()
        assert len(daily) == 2 and daily[-1]["processed"] == 20
        assert c.get("/api/v1/stats/daily", params={"days": 91}).status_code == 422
        health = c.get("/api/v1/health").json()
        assert health["ok"] is True and health["redis_version"]


def test_redis_down_is_503_with_retry_after(redis_url: str) -> None:
    app = make_app("redis://127.0.0.1:9/0")  # nothing listens on the discard port
    with running_api(app) as server, client(server, ADMIN) as c:
        for method, path, body in (("GET", "/api/v1/queues", None),
                                   ("POST", "/api/v1/jobs", {"type": "echo"}),
                                   ("GET", "/api/v1/dead", None), ("GET", "/readyz", None)):
            r = c.request(method, path, json=body)
            assert r.status_code == 503, (path, r.text)
            assert r.headers["retry-after"] == "5"
            assert r.json()["error"] == "redis_unavailable"
        assert c.get("/healthz").status_code == 200
        assert c.get("/api/v1/health").json()["ok"] is False
        assert "conveyor_redis_up 0.0" in c.get("/metrics").text
    app.close()


def test_security_headers_and_cors_off_by_default(c: httpx.Client) -> None:
    r = c.get("/api/v1/stats")
    assert "'unsafe-inline'" not in r.headers["content-security-policy"]
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"
    pre = c.options("/api/v1/jobs", headers={"Origin": "https://evil.example",
                                             "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in pre.headers


def test_cors_when_configured(job_app: App) -> None:
    with running_api(job_app, cors_origins=["https://ops.example"]) as server, \
            client(server, READ) as c:
        ok = c.get("/api/v1/stats", headers={"Origin": "https://ops.example"})
        assert ok.headers["access-control-allow-origin"] == "https://ops.example"
        other = c.get("/api/v1/stats", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_insecure_local_allows_loopback_only(job_app: App) -> None:
    with running_api(job_app, tokens=[], insecure_local=True) as server, \
            httpx.Client(base_url=server.url) as c:
        assert c.post("/api/v1/queues/default/pause").status_code == 404  # allowed, no queue
        assert c.post("/api/v1/jobs", json={"type": "echo"}).status_code == 202
        rebound = c.get("/api/v1/stats", headers={"Host": "evil.example"})
        assert rebound.status_code == 403
        cross = c.post("/api/v1/jobs", json={"type": "echo"},
                       headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403 and cross.json()["error"] == "cross_site"
        fetch = c.post("/api/v1/jobs", json={"type": "echo"},
                       headers={"Sec-Fetch-Site": "cross-site"})
        assert fetch.status_code == 403
    with pytest.raises(ConfigurationError, match="loopback"):
        ApiConfig(host="0.0.0.0", insecure_local=True).check()


def test_without_any_token_one_admin_token_is_made() -> None:
    cfg = ApiConfig()
    secret = cfg.ensure_token()
    assert secret and len(cfg.tokens) == 1 and cfg.tokens[0].scope.name == "ADMIN"
    assert ApiConfig(insecure_local=True).ensure_token() is None


@pytest.mark.parametrize("spec", ["admin:short", "root:" + "x" * 30, "nocolon" * 5])
def test_weak_or_malformed_tokens_are_refused(spec: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_token(spec)


def test_bearer_scheme_errors(c: httpx.Client, api: BackgroundServer) -> None:
    r = httpx.get(api.url + "/api/v1/stats", headers={"Authorization": "Basic YTpi"})
    assert r.status_code == 401 and "Bearer" in r.json()["message"]
    assert c.get("/api/v1/nothing-here").status_code == 404
    assert c.delete("/api/v1/stats").status_code == 405


def test_flow_state_in_the_api_and_the_dashboard(c: httpx.Client, api: BackgroundServer,
                                                 job_app: App) -> None:
    Inspector(job_app.client.sync).flow.open_breaker("<mailer>", 60)
    state = c.get("/api/v1/flow").json()
    assert [b["name"] for b in state["breakers"]] == ["<mailer>"]
    assert state["breakers"][0]["state"] == "open"
    with httpx.Client(base_url=api.url) as web:
        web.post("/login", data={"token": ADMIN})
        page = web.get("/flow").text
    assert "&lt;mailer&gt;" in page and "state-open" in page
