"""Scenario 12: every mutating route refuses unauthenticated and cross-site requests.

Routes are enumerated from the application's router (not listed by hand). Redis is seeded with
a queued, a scheduled, a retrying and a dead job, then every POST route gets each hostile
request of :data:`CASES`; after each one the whole Redis content is compared with the snapshot
taken before it. Every GET route is also called with a read token, to catch GETs with side
effects. Positive controls (an admin token; a same-origin cookie session with its CSRF token)
must change state, which proves the comparison can see a change.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from conveyor import EnqueueRequest
from conveyor.job import build_payload, dumps, new_jid

from ..apiproc import ADMIN, READ, ApiProc, secret
from ..rig import Rig

EVIL_ORIGIN = "https://evil.example"
ENTRY_POINTS = frozenset({"/login", "/logout"})  # how a session starts and ends
VOLATILE = (b"stat:",)


def routes(rig: Rig) -> list[tuple[str, str]]:
    """(method, path) of every route, walked from the app's router.

    The router is built for an app of its own on the rig's Redis: ``create_app`` resolves its
    app's Redis at once, and ``chaos_app.app`` has no Redis URL in this process (only the
    worker and API processes get ``CONVEYOR_REDIS_URL``), so it would start the embedded server
    in the working directory (the checkout's ``.conveyor``) and leave it running. The routes
    do not depend on the app's job types.
    """
    from conveyor import App
    from conveyor.api.app import create_app
    from conveyor.api.config import ApiConfig
    from conveyor.settings import Settings

    app = App(settings=Settings(redis_url=rig.url))
    try:
        asgi = create_app(ApiConfig(insecure_local=True), app)
    finally:
        app.close()

    def walk(items: list[Any]) -> list[tuple[str, str]]:
        out = []
        for r in items:
            if hasattr(r, "original_router"):
                out += walk(r.original_router.routes)
            elif hasattr(r, "path") and getattr(r, "methods", None):
                out += [(m, r.path) for m in sorted(r.methods) if m != "HEAD"]
        return out

    return walk(asgi.routes)


def seed(rig: Rig) -> str:
    jid = rig.app.enqueue("work", args=["seed", 1]).id
    rig.app.enqueue_many([EnqueueRequest("work", args=["later", 1], delay=3600)])
    for zset in ("retry", "dead"):
        payload = build_payload("work", ["x", 1], jid=new_jid())
        rig.r.zadd(zset, {dumps({**payload, "error_class": "E", "retry_count": 0}): 1e10})
    return jid


def snapshot(rig: Rig) -> dict[bytes, bytes | None]:
    return {k: rig.r.dump(k) for k in sorted(rig.r.keys("*")) if not k.startswith(VOLATILE)}


def _fill(path: str, jid: str) -> str:
    return re.sub(r"\{(job_id|jid)\}", jid, path).replace("{name:path}", "default")


def _body(path: str) -> dict[str, Any]:
    if path.endswith("/jobs"):
        return {"json": {"type": "work", "args": ["u", 1]}}
    if path.endswith("/batch"):
        return {"json": {"jobs": [{"type": "work", "args": ["u", 1]}]}}
    if path.startswith("/api/"):
        return {"json": {"all": True}}
    return {"data": {"all": "1"}}


def login(api: ApiProc) -> tuple[str, str]:
    """An admin cookie session and its CSRF token, as a browser would get them."""
    with httpx.Client(base_url=api.url) as c:
        c.post("/login", data={"token": secret(ADMIN)},
               headers={"Origin": api.url, "Sec-Fetch-Site": "same-origin"})
        cookie = c.cookies.get("conveyor_session") or ""
        page = c.get("/").text
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    return cookie, found.group(1) if found else ""


def cases(api: ApiProc, cookie: str, csrf: str) -> dict[str, dict[str, Any]]:
    with_csrf = {"X-CSRF-Token": csrf}
    return {
        "no_credentials": {},
        "wrong_token": {"headers": {"Authorization": "Bearer " + "w" * 32}},
        "read_token": {"headers": {"Authorization": f"Bearer {secret(READ)}"}},
        "cookie_cross_site": {"cookies": cookie, "headers": {
            **with_csrf, "Sec-Fetch-Site": "cross-site", "Origin": api.url}},
        "cookie_foreign_origin": {"cookies": cookie, "headers": {
            **with_csrf, "Origin": EVIL_ORIGIN}},
        "cookie_without_csrf": {"cookies": cookie, "headers": {
            "Sec-Fetch-Site": "same-origin", "Origin": api.url}},
    }


def matrix(rig: Rig, api: ApiProc) -> dict[str, Any]:
    jid = seed(rig)
    all_routes = routes(rig)
    posts = [p for m, p in all_routes if m == "POST" and p not in ENTRY_POINTS]
    cookie, csrf = login(api)
    violations: list[str] = []
    statuses: dict[str, int] = {}
    with httpx.Client(base_url=api.url, timeout=10.0) as client:
        for path in posts:
            url = _fill(path, jid)
            for name, opts in cases(api, cookie, csrf).items():
                before = snapshot(rig)
                client.cookies.clear()
                if "cookies" in opts:
                    client.cookies.set("conveyor_session", opts["cookies"])
                resp = client.post(url, headers=opts.get("headers"), **_body(path))
                statuses[f"{name} {path}"] = resp.status_code
                if resp.is_success or snapshot(rig) != before:
                    violations.append(f"{name} POST {path} -> {resp.status_code}")
            client.cookies.clear()
            if client.get(url, headers={"Authorization": f"Bearer {secret(ADMIN)}"}
                          ).status_code < 300:
                violations.append(f"GET accepted on mutating route {path}")
        read = {"Authorization": f"Bearer {secret(READ)}"}
        gets = [p for m, p in all_routes if m == "GET"]
        before = snapshot(rig)
        for path in gets:
            client.get(_fill(path, jid), headers=read)
        get_side_effects = snapshot(rig) != before
        controls = _controls(rig, api, client, cookie, csrf)
    return {"scenario": "auth_cross_site", "routes": len(all_routes), "mutating_routes": len(posts),
            "requests": len(statuses), "violations": violations,
            "get_side_effects": get_side_effects, "controls": controls,
            "refusal_statuses": sorted({str(s) for s in statuses.values()})}


def _controls(rig: Rig, api: ApiProc, client: httpx.Client, cookie: str, csrf: str
              ) -> dict[str, Any]:
    out = {}
    before = snapshot(rig)
    client.cookies.clear()
    resp = client.post("/api/v1/queues/default/pause", json={},
                       headers={"Authorization": f"Bearer {secret(ADMIN)}"})
    out["admin_token"] = {"status": resp.status_code, "changed": snapshot(rig) != before}
    before = snapshot(rig)
    client.cookies.clear()
    client.cookies.set("conveyor_session", cookie)
    resp = client.post("/queues/default/resume", data={"csrf": csrf},
                       headers={"Origin": api.url, "Sec-Fetch-Site": "same-origin"})
    out["same_origin_session"] = {"status": resp.status_code, "changed": snapshot(rig) != before}
    out["paused_after"] = json.dumps([q.decode() for q in rig.r.smembers("conveyor:paused")])
    return out
