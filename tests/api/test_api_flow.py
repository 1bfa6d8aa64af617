"""Flow control through the REST API and the dashboard: run-time limits that a real worker
applies, cron entries, breaker resets, workflows, unique locks and a job's deferral record."""

from __future__ import annotations

from typing import Any

import httpx
from api_helpers import ADMIN, READ, WorkerThread, client, wait_until

from conveyor import App, EnqueueRequest
from conveyor.admin import Inspector
from conveyor.api import BackgroundServer
from conveyor.flow import chain


def fields(r: httpx.Response) -> list[str]:
    return [f["field"] for f in r.json()["fields"]]


def test_a_rate_limit_set_through_the_api_defers_jobs_in_a_real_worker(
        api: BackgroundServer, job_app: App) -> None:
    with client(api, ADMIN) as c:
        r = c.post("/api/v1/flow/limits/echo/rate", json={"rate": "1/m"})
        assert r.status_code == 200, r.text
        assert r.json()["runtime"]["rate_limit"][0]["limit"] == 1
        assert "rate 1/60s window" in r.json()["effective"]
    first, second = (job_app.enqueue("echo", args=[i]) for i in range(2))
    with WorkerThread(job_app, concurrency=2):
        wait_until(lambda: first.status().state == "completed" and
                   second.status().state == "scheduled", what="one run, one deferral")
    with client(api, READ) as c:
        r = c.get(f"/api/v1/flow/jobs/{second.id}/deferral")
        done = c.get(f"/api/v1/flow/jobs/{first.id}/deferral").json()
        detail = c.get(f"/api/v1/jobs/{second.id}").json()
        first_detail = c.get(f"/api/v1/jobs/{first.id}").json()
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["deferrals"] == 1 and body["state"] == "scheduled"
    assert body["deferred_reason"] == "rate limit echo (1/60s window)"
    assert body["scheduled_at"] > body["deferred_at"] > 0
    assert done["deferrals"] == 0 and done["admitted_at"] > 0
    assert detail["deferred_reason"] == body["deferred_reason"]  # the job detail shows it too
    assert first_detail["admitted_at"] == done["admitted_at"]
    with client(api, ADMIN) as c:
        cleared = c.post("/api/v1/flow/limits/echo/rate/clear")
    assert cleared.status_code == 200 and cleared.json()["runtime"] is None


def test_limits_are_set_removed_and_cleared_per_field(api: BackgroundServer) -> None:
    with client(api, ADMIN) as c:
        c.post("/api/v1/flow/limits/echo/rate", json={"rate": "5/s", "key": "t:{args[0]}"})
        r = c.post("/api/v1/flow/limits/echo/concurrency", json={"limit": 2})
        assert r.json()["runtime"]["concurrency_limit"][0]["limit"] == 2
        assert r.json()["runtime"]["rate_limit"][0]["key"] == "t:{args[0]}"
        r = c.post("/api/v1/flow/limits/echo/concurrency", json={"limit": None})
        assert r.json()["runtime"]["concurrency_limit"] is None  # explicitly none
        r = c.post("/api/v1/flow/limits/echo/concurrency/clear")
        assert "concurrency_limit" not in r.json()["runtime"]  # the rate limit stays
        r = c.post("/api/v1/flow/limits/echo/rate/clear")
        assert r.json() == {"job_type": "echo", "declared": None, "runtime": None,
                            "effective": []}


def test_bad_limits_are_422s_naming_the_field(api: BackgroundServer) -> None:
    cases: list[tuple[str, Any, str]] = [
        ("rate", {"rate": "ten a second"}, "body.rate"),
        ("rate", {"rate": "10/s", "key": "t:{nope}"}, "body.key"),
        ("rate", {}, "body.rate"),
        ("rate", {"rate": "10/s", "burst": 3}, "body.burst"),
        ("concurrency", {"limit": 0}, "body.limit"),
        ("concurrency", {"limit": "3"}, "body.limit"),
        ("concurrency", {"limit": 3, "key": "{args.}"}, "body.key"),
    ]
    with client(api, ADMIN) as c:
        for kind, body, field in cases:
            r = c.post(f"/api/v1/flow/limits/echo/{kind}", json=body)
            assert r.status_code == 422, (body, r.text)
            assert field in fields(r), (body, r.json())
        assert c.get("/api/v1/flow").json()["policies"] == []  # nothing was stored
        r = c.post("/api/v1/flow/limits/no-such-type/rate", json={"rate": "1/s"})
        assert r.status_code == 404 and "no-such-type" in r.json()["message"]


def test_cron_entries_are_added_and_removed(api: BackgroundServer) -> None:
    with client(api, ADMIN) as c:
        r = c.post("/api/v1/flow/cron", json={"name": "nightly", "job": "echo",
                                              "cron": "0 3 * * *", "tz": "Europe/Paris",
                                              "args": [1]})
        assert r.status_code == 200, r.text
        assert (r.json()["source"], r.json()["tz"]) == ("runtime", "Europe/Paris")
        assert r.json()["next_slot"] > 0
        assert [e["name"] for e in c.get("/api/v1/flow").json()["cron"]] == ["nightly"]
        bad = [({"name": "x", "job": "echo", "cron": "61 * * * *"}, "body.cron"),
               ({"name": "x", "job": "echo", "every_s": 60, "tz": "Mars/Olympus"}, "body.tz"),
               ({"name": "x", "job": "echo"}, "body.cron"),
               ({"name": "x", "job": "nope", "every_s": 60}, "body.job"),
               ({"name": "x", "job": "echo", "every_s": 60, "catch_up": "some"},
                "body.catch_up"),
               ({"name": "x", "job": "echo", "cron": "0 0 31 2 *"}, "body.cron")]  # no slot
        for body, field in bad:
            r = c.post("/api/v1/flow/cron", json=body)
            assert r.status_code == 422 and field in fields(r), (body, r.text)
        assert c.post("/api/v1/flow/cron/nightly/remove").json() == {"name": "nightly",
                                                                     "removed": True}
        assert c.post("/api/v1/flow/cron/nightly/remove").status_code == 404
        assert c.get("/api/v1/flow").json()["cron"] == []


def test_a_breaker_is_reset_and_an_unknown_one_is_a_404(api: BackgroundServer,
                                                        job_app: App) -> None:
    Inspector(job_app.client.sync).flow.open_breaker("sidecar:http://127.0.0.1:9292", 60)
    with client(api, ADMIN) as c:
        r = c.post("/api/v1/flow/breakers/sidecar:http:%2F%2F127.0.0.1:9292/reset")
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "closed" and r.json()["name"] == "sidecar:http://127.0.0.1:9292"
        assert c.post("/api/v1/flow/breakers/nope/reset").status_code == 404


def test_workflows_and_unique_locks_are_readable(api: BackgroundServer, job_app: App) -> None:
    wf = chain(EnqueueRequest("echo", args=[1]), EnqueueRequest("echo")).enqueue(job_app)
    held = job_app.enqueue("echo", args=[2], unique_key="invoice:7")
    with client(api, READ) as c:
        listed = c.get("/api/v1/flow/workflows").json()
        one = c.get(f"/api/v1/flow/workflows/{wf.id}").json()
        locks = c.get("/api/v1/flow/unique-locks").json()
        lock = c.get("/api/v1/flow/unique-locks/invoice:7").json()
        assert c.get("/api/v1/flow/workflows/wfnope").status_code == 404
        assert c.get("/api/v1/flow/unique-locks/invoice:8").status_code == 404
        assert c.get("/api/v1/flow/workflows?limit=0").status_code == 422
    assert [w["id"] for w in listed] == [wf.id] and listed[0]["state"] == "active"
    assert [n["kind"] for n in one["nodes"]] == ["chain", "job", "job"]
    assert [(u["key"], u["jid"]) for u in locks] == [("invoice:7", held.id)]
    assert lock["jid"] == held.id and 0 < lock["ttl_s"] <= 3600


def test_the_dashboard_shows_workflows_locks_and_a_jobs_deferrals(
        api: BackgroundServer, job_app: App) -> None:
    wf = chain(EnqueueRequest("echo", args=[1]), EnqueueRequest("echo")).enqueue(job_app)
    held = job_app.enqueue("echo", args=[2], unique_key="invoice:7")
    r = job_app.client.sync.redis  # what admit.lua writes when it defers a job
    r.hset(job_app.client.sync.keys.job(held.id), mapping={
        "deferrals": 2, "deferred_reason": "breaker sidecar:http://x:1 is open",
        "deferred_at": "1700000000.5"})
    with httpx.Client(base_url=api.url, timeout=10.0) as c:
        assert c.post("/login", data={"token": READ, "next": "/"}).status_code == 303
        page = c.get("/flow").text
        job = c.get(f"/jobs/{held.id}").text
    assert wf.id in page and "invoice:7" in page and held.id in page
    assert "Deferred 2 time(s)" in job and "breaker sidecar:http://x:1 is open" in job
