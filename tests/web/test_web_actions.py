"""Every dashboard route, enumerated from the router: login, read-only and admin sessions,
CSRF and cross-site refusals, and POST-only state changes (T13)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from api_helpers import ADMIN, READ, WRONG
from fastapi.routing import iter_route_contexts
from web_helpers import csrf_of, session

from conveyor import App
from conveyor.admin import Inspector
from conveyor.api import BackgroundServer, create_app
from conveyor.api.config import ApiConfig
from conveyor.testing import drain

API_PREFIXES = ("/api/", "/healthz", "/readyz", "/metrics", "/openapi.json")


def dashboard_routes() -> list[tuple[str, str]]:
    api = create_app(ApiConfig(insecure_local=True), App(redis_url="redis://127.0.0.1:1"))
    out = []
    for ctx in iter_route_contexts(api.router.routes):
        methods = getattr(ctx.original_route, "methods", None) or set()
        path = str(ctx.path)
        if path.startswith(API_PREFIXES):
            continue
        out.extend((m, path) for m in sorted(methods - {"HEAD"}))
    return out


ROUTES = dashboard_routes()
FLOW = ("GET", "/flow") in ROUTES  # the flow-control page exists when the facade has flow
GETS = [p for m, p in ROUTES if m == "GET" and p != "/login"]
ACTIONS = [p for m, p in ROUTES if m == "POST" and p not in ("/login", "/logout")]


def test_the_route_list_is_what_the_tests_cover() -> None:
    assert set(ROUTES) == {("GET", "/login"), ("POST", "/login"), ("POST", "/logout")} | {
        ("GET", p) for p in GETS} | {("POST", p) for p in ACTIONS}
    assert len(GETS) == (9 if FLOW else 8) and len(ACTIONS) == 11


class Seed:
    def __init__(self, app: App) -> None:
        self.dead = [app.enqueue("boom", args=[f"d{i}"]).id for i in range(2)]
        drain(app)
        self.queued = app.enqueue("echo", args=[1]).id
        self.scheduled = app.enqueue("echo", delay=600).id

    def fill(self, path: str) -> str:
        jid = self.dead[0] if path.endswith("/retry") else self.queued
        return path.replace("{name:path}", "default").replace("{jid}", jid)

    def form(self, path: str) -> dict[str, Any]:
        if path.startswith("/dead/"):
            return {"job_id": self.dead[1]}
        if path.startswith("/scheduled/"):
            return {"job_id": self.scheduled}
        if path.startswith("/retries/"):
            return {"all": "1"}
        return {}


def state(app: App) -> Any:
    ins = Inspector(app.client.sync)
    return ([(q.name, q.size, q.paused) for q in ins.queues()],
            {s: ins.set_size(s) for s in ("schedule", "retry", "dead")},
            ins.job(next(iter([e.jid for e in ins.entries("schedule")]), "x" * 24)).state
            if ins.set_size("schedule") else None)


@pytest.mark.parametrize("path", GETS)
def test_pages_need_a_session(path: str, web: BackgroundServer, job_app: App) -> None:
    url = Seed(job_app).fill(path)
    r = httpx.get(web.url + url)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    bearer = httpx.get(web.url + url, headers={"Authorization": f"Bearer {ADMIN}"})
    assert bearer.status_code == 303, "pages take sessions, not bearer tokens"
    for token in (READ, ADMIN):
        with session(web, token) as c:
            page = c.get(url)
            assert page.status_code == 200, page.text
            assert page.headers["content-type"].startswith("text/html")
            assert "'unsafe-inline'" not in page.headers["content-security-policy"]


@pytest.mark.parametrize("path", ACTIONS)
def test_actions_need_admin_session_same_origin_and_csrf(path: str, web: BackgroundServer,
                                                         job_app: App) -> None:
    seed = Seed(job_app)
    url, form = seed.fill(path), {"next": "/queues", **seed.form(path)}
    before = state(job_app)
    anonymous = httpx.post(web.url + url, data=form)
    assert anonymous.status_code == 303 and "/login" in anonymous.headers["location"]
    with session(web, READ) as c:
        r = c.post(url, data={**form, "csrf": csrf_of(c)})
        assert r.status_code == 403 and "read-only" in r.text
    with session(web, ADMIN) as c:
        token = csrf_of(c)
        refusals = [
            c.post(url, data=form),
            c.post(url, data={**form, "csrf": "forged"}),
            c.post(url, data={**form, "csrf": token}, headers={"Sec-Fetch-Site": "cross-site"}),
            c.post(url, data={**form, "csrf": token}, headers={"Sec-Fetch-Site": "same-site"}),
            c.post(url, data={**form, "csrf": token}, headers={"Origin": "https://evil.example"}),
            c.post(url, data={**form, "csrf": token}, headers={"Origin": "null"}),
            c.get(url),
        ]
        assert [r.status_code for r in refusals[:-1]] == [403] * 6
        assert refusals[-1].status_code in (404, 405), "GET must never act"
        assert state(job_app) == before, "a refused action changed the state"
        ok = c.post(url, data={**form, "csrf": token},
                    headers={"Origin": web.url, "Sec-Fetch-Site": "same-origin"})
        assert ok.status_code == 303, ok.text
        assert ok.headers["location"].startswith("/queues?done=")


def test_actions_do_what_they_say(web: BackgroundServer, job_app: App) -> None:
    seed = Seed(job_app)
    ins = Inspector(job_app.client.sync)
    with session(web, ADMIN) as c:
        token = csrf_of(c)
        c.post("/queues/default/pause", data={"csrf": token})
        assert ins.queues()[0].paused
        r = c.post("/dead/requeue", data={"csrf": token, "job_id": seed.dead},
                   follow_redirects=True)
        assert "Requeued 2 job(s)." in r.text
        assert ins.set_size("dead") == 0 and ins.queues()[0].size == 3
        c.post("/queues/default/purge", data={"csrf": token})
        assert ins.queues()[0].size == 0
        c.post(f"/jobs/{seed.scheduled}/cancel", data={"csrf": token})
        assert ins.job(seed.scheduled).state == "cancelled"


def test_login_logout_and_open_redirects(web: BackgroundServer) -> None:
    with httpx.Client(base_url=web.url) as c:
        assert c.post("/login", data={"token": WRONG}).status_code == 401
        assert "conveyor_session" not in c.cookies
        cross = c.post("/login", data={"token": ADMIN}, headers={"Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 403
        for target in ("//evil.example/x", "https://evil.example", "/\\evil.example"):
            r = c.post("/login", data={"token": ADMIN, "next": target})
            assert r.headers["location"] == "/"
        r = c.post("/login", data={"token": ADMIN, "next": "/dead?offset=0"})
        assert r.headers["location"] == "/dead?offset=0"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert c.post("/logout").status_code == 403
        out = c.post("/logout", data={"csrf": csrf_of(c)})
        assert out.status_code == 303
        assert c.get("/").status_code == 303


def test_forged_or_expired_sessions_are_refused(web: BackgroundServer) -> None:
    with session(web, ADMIN) as c:
        value = c.cookies["conveyor_session"]
        version, payload, sig = value.split(".")
        tampered = httpx.get(web.url + "/", cookies={"conveyor_session": f"{version}.{payload}x."
                                                                           f"{sig}"})
        assert tampered.status_code == 303
    auth = web.server.config.app.state.auth
    token = auth.tokens[0]
    stale = auth.new_session(token, now=1.0)
    assert auth.read_session(stale) is None
    assert auth.read_session(auth.new_session(token)) is not None
