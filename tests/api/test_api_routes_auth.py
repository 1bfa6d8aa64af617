"""Every route, enumerated from the router, against every kind of caller (T13).

The route list comes from the app itself, so a new route without an example here fails
``test_every_route_has_an_example``. Each API route is called with no credentials, a wrong
token, a read token, an enqueue token and an admin token; refusals must leave the state as it
was, the allowed calls must succeed. Each POST route is also called as GET (no side effects).
The dashboard routes are checked the same way with session cookies in test_web_actions.py.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from api_helpers import ADMIN, ENQUEUE, READ, WRONG, client, make_app
from fastapi.routing import iter_route_contexts

from conveyor import App, EnqueueRequest
from conveyor.admin import Inspector
from conveyor.api import BackgroundServer, create_app
from conveyor.api.auth import required_scope
from conveyor.api.config import ApiConfig, Scope
from conveyor.testing import drain

PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/openapi.json")}
DASHBOARD_PREFIXES = ("/login", "/logout", "/queues", "/jobs", "/workers", "/scheduled",
                      "/retries", "/dead", "/flow")


def enumerate_routes() -> list[tuple[str, str, Any]]:
    """(method, path template, route) of every route the app serves (mounts excluded)."""
    api = create_app(ApiConfig(insecure_local=True), App(redis_url="redis://127.0.0.1:1"))
    out = []
    for ctx in iter_route_contexts(api.router.routes):
        methods = getattr(ctx.original_route, "methods", None) or set()
        for method in sorted(methods - {"HEAD"}):
            out.append((method, str(ctx.path), ctx.original_route))
    return out


ROUTES = enumerate_routes()
API_ROUTES = [(m, p, r) for m, p, r in ROUTES
              if p.startswith(("/api/", "/healthz", "/readyz", "/metrics", "/openapi.json"))]
DASHBOARD_ROUTES = [(m, p) for m, p, _ in ROUTES if (m, p, _) not in API_ROUTES]


def declared_scope(route: Any) -> Scope | None:
    stack = list(getattr(getattr(route, "dependant", None), "dependencies", []))
    while stack:
        dep = stack.pop()
        found = required_scope(dep.call)
        if found is not None:
            return found
        stack.extend(dep.dependencies)
    return None


def policy(method: str, path: str) -> Scope | None:
    """What each route should demand, written independently of the code."""
    if (method, path) in PUBLIC:
        return None
    if method == "GET":
        return Scope.READ
    if path in ("/api/v1/jobs", "/api/v1/jobs/batch"):
        return Scope.ENQUEUE
    return Scope.ADMIN


class Seed:
    """Data every example works on: a queued job, dead jobs, a scheduled job."""

    def __init__(self, app: App) -> None:
        self.dead = [app.enqueue("boom", args=[f"dead {i}"]).id for i in range(3)]
        drain(app)
        self.queued = app.enqueue("echo", args=[1]).id
        self.scheduled = app.enqueue("echo", args=[2], delay=3600).id
        if hasattr(Inspector, "flow"):  # flow control: a cron entry, a breaker, a workflow and
            from conveyor.flow import CronEntry, chain  # a unique lock, all named "default"

            flow = Inspector(app.client.sync).flow
            flow.add_cron(CronEntry("default", "echo", every_s=3600))
            flow.open_breaker("default", 60)
            self.workflow = chain(EnqueueRequest("echo", args=[3]),
                                  EnqueueRequest("echo")).enqueue(app).id
            app.enqueue("echo", args=[4], unique_key="default")


def example(method: str, path: str, seed: Seed) -> tuple[str, Any]:
    """A request that should succeed for a caller with enough scope: (url, json body)."""
    jobs = {"type": "echo", "args": [1]}
    filled = (path.replace("{name:path}", "default")
              .replace("{job_id}", seed.dead[0] if path.endswith("/retry") else seed.queued)
              .replace("{job_type}", "echo").replace("{wf_id}", getattr(seed, "workflow", "")))
    bodies = {
        "/api/v1/jobs": jobs,
        "/api/v1/jobs/batch": {"jobs": [jobs, jobs]},
        "/api/v1/dead/requeue": {"job_ids": [seed.dead[1]]},
        "/api/v1/dead/delete": {"job_ids": [seed.dead[2]]},
        "/api/v1/scheduled/requeue": {"job_ids": [seed.scheduled]},
        "/api/v1/scheduled/delete": {"job_ids": [seed.scheduled]},
        "/api/v1/retries/requeue": {"all": True},
        "/api/v1/retries/delete": {"all": True},
        "/api/v1/flow/limits/{job_type}/rate": {"rate": "10/s"},
        "/api/v1/flow/limits/{job_type}/concurrency": {"limit": 3},
        "/api/v1/flow/cron": {"name": "added", "job": "echo", "every_s": 60},
    }
    return filled, bodies.get(path) if method == "POST" else None


def snapshot(app: App) -> Any:
    ins = Inspector(app.client.sync)
    sets = {s: sorted(e.jid for e in ins.entries(s, limit=500)) for s in ("schedule", "retry",
                                                                          "dead")}
    queues = [(q.name, q.size, q.paused) for q in ins.queues()]
    return queues, sets, ins.stats()


def test_every_route_has_an_example_and_a_policy() -> None:
    """The API routes here are all the router has (the dashboard ones are in tests/web)."""
    assert len(API_ROUTES) >= 29
    for method, path, route in API_ROUTES:
        want = policy(method, path)
        if (method, path) not in PUBLIC:
            assert declared_scope(route) == want, f"{method} {path} declares another scope"
        if method == "POST":
            assert want is not None and want >= Scope.ENQUEUE
    assert all(p.startswith(DASHBOARD_PREFIXES) or p == "/" for _, p in DASHBOARD_ROUTES)


def _call(c: httpx.Client, method: str, url: str, body: Any) -> httpx.Response:
    return c.request(method, url, json=body) if body is not None else c.request(method, url)


@pytest.mark.parametrize(("method", "path"), [(m, p) for m, p, _ in API_ROUTES])
def test_api_route_auth(method: str, path: str, redis_url: str) -> None:
    app = make_app(redis_url)
    seed = Seed(app)
    want = policy(method, path)
    url, body = example(method, path, seed)
    from api_helpers import running_api

    with running_api(app) as server:
        before = snapshot(app)
        for token, expected in ((None, 401), (WRONG, 401)):
            with client(server, token) as c:
                r = _call(c, method, url, body)
            if want is None:
                assert r.status_code == 200, (token, r.text)
            else:
                assert r.status_code == expected, (token, r.status_code, r.text)
                assert r.json()["error"] == "unauthorized"
                assert "www-authenticate" in r.headers
        for token, scope in ((READ, Scope.READ), (ENQUEUE, Scope.ENQUEUE)):
            if want is not None and scope < want:
                with client(server, token) as c:
                    r = _call(c, method, url, body)
                assert r.status_code == 403, (scope, r.text)
                assert r.json()["error"] == "forbidden"
        if method == "POST":
            with client(server, ADMIN) as c:
                r = c.get(url)
            assert r.status_code in (404, 405), r.text
        assert snapshot(app) == before, "a refused request changed the state"
        _allowed_calls(server, method, url, body, want)
    app.close()


def _allowed_calls(server: BackgroundServer, method: str, url: str, body: Any,
                   want: Scope | None) -> None:
    tokens = [(READ, Scope.READ), (ENQUEUE, Scope.ENQUEUE), (ADMIN, Scope.ADMIN)]
    permitted = [t for t, s in tokens if want is None or s >= want]
    if method == "POST":
        permitted = permitted[:1]  # a mutation succeeds once; repeating it may find nothing
    for token in permitted:
        with client(server, token) as c:
            r = _call(c, method, url, body)
        assert 200 <= r.status_code < 300, (method, url, r.status_code, r.text)
