"""Job routes: submit (one, batch, idempotent), read, cancel, retry, and the errors they give."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from api_helpers import ADMIN, ENQUEUE, client

from conveyor import App
from conveyor.admin import Inspector
from conveyor.api import BackgroundServer
from conveyor.testing import drain


@pytest.fixture
def c(api: BackgroundServer) -> Iterator[httpx.Client]:
    with client(api, ADMIN) as c:
        yield c


def test_submit_payload_runs_and_reports_its_result(c: httpx.Client, job_app: App) -> None:
    r = c.post("/api/v1/jobs", json={"type": "echo", "payload": {"to": "a@example.com"},
                                     "priority": "high", "retries": 3, "timeout": 30})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    assert r.json()["status"] == "enqueued"
    assert Inspector(job_app.client.sync).queue_jobs("high")[0].jid == job_id
    drain(job_app)
    job = c.get(f"/api/v1/jobs/{job_id}").json()
    assert job["state"] == "completed"
    assert job["result"] == {"args": [{"to": "a@example.com"}], "kwargs": {}}
    assert job["queue"] == "high" and job["attempts"] == 1
    assert job["started_at"] <= job["finished_at"]


def test_submit_args_kwargs_delay_and_run_at(c: httpx.Client, job_app: App) -> None:
    later = c.post("/api/v1/jobs", json={"type": "echo", "args": [1], "kwargs": {"k": 2},
                                         "delay": 3600}).json()
    assert later["status"] == "scheduled"
    at = c.post("/api/v1/jobs", json={"type": "echo", "run_at": "2999-01-01T00:00:00Z"}).json()
    assert at["status"] == "scheduled"
    past = c.post("/api/v1/jobs", json={"type": "echo", "run_at": 1_000_000_000}).json()
    assert past["status"] == "enqueued"
    listed = c.get("/api/v1/scheduled").json()
    assert {e["job_id"] for e in listed} == {later["job_id"], at["job_id"]}
    assert next(e for e in listed if e["job_id"] == later["job_id"])["kwargs"] == {"k": 2}
    assert c.get(f"/api/v1/jobs/{later['job_id']}").json()["state"] == "scheduled"


BAD_INPUTS: list[tuple[dict[str, Any], str]] = [
    ({}, "body.type"),
    ({"type": ""}, "body.type"),
    ({"type": "nope"}, "body.type"),
    ({"type": "echo", "payload": 1, "args": [1]}, "body.args"),
    ({"type": "echo", "queue": "q", "priority": "high"}, "body.priority"),
    ({"type": "echo", "priority": "urgent"}, "body.priority"),
    ({"type": "echo", "delay": 5, "run_at": 1_900_000_000}, "body.run_at"),
    ({"type": "echo", "delay": -1}, "body.delay"),
    ({"type": "echo", "retries": -1}, "body.retries"),
    ({"type": "echo", "timeout": 0}, "body.timeout"),
    ({"type": "echo", "args": {"not": "a list"}}, "body.args"),
    ({"type": "echo", "queue": "has space"}, "body.queue"),
    ({"type": "echo", "bogus": 1}, "body.bogus"),
    ({"type": "echo", "run_at": "not a time"}, "body.run_at"),
]


@pytest.mark.parametrize(("body", "field"), BAD_INPUTS, ids=[f for _, f in BAD_INPUTS])
def test_bad_submissions_name_the_field(c: httpx.Client, body: dict[str, Any], field: str,
                                        job_app: App) -> None:
    r = c.post("/api/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    fields = [f["field"] for f in r.json()["fields"]]
    assert any(f.startswith(field) for f in fields), fields
    assert Inspector(job_app.client.sync).stats().enqueued == 0


def test_unique_key_returns_the_job_holding_it(c: httpx.Client, job_app: App) -> None:
    body = {"type": "echo", "args": [1], "unique_key": "invoice-9", "unique_ttl": 60}
    first = c.post("/api/v1/jobs", json=body)
    second = c.post("/api/v1/jobs", json=body)
    assert first.status_code == 202 and second.status_code == 200
    assert second.json() == {"job_id": first.json()["job_id"], "status": "enqueued",
                             "replayed": False, "duplicate": True}
    assert Inspector(job_app.client.sync).stats().enqueued == 1
    bad = c.post("/api/v1/jobs", json={**body, "unique_scope": "forever"})
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "body.unique_scope"


def test_unknown_type_lists_the_registered_ones(c: httpx.Client) -> None:
    r = c.post("/api/v1/jobs", json={"type": "nope"})
    assert r.json()["message"] == ("job type 'nope' is not registered; registered types: boom, "
                                   "echo, slow")


@pytest.mark.parametrize("raw", [b"{bad json", b'{"type": "echo", "delay": NaN}', b"",
                                 b"[1, 2]", b'"text"'])
def test_malformed_bodies_are_4xx(c: httpx.Client, raw: bytes) -> None:
    r = c.post("/api/v1/jobs", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422), r.text
    assert r.json()["fields"]


def test_idempotency_key_returns_the_same_job(c: httpx.Client, job_app: App) -> None:
    body = {"type": "echo", "args": [1]}
    first = c.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "order-17"})
    second = c.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "order-17"})
    other = c.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "order-18"})
    assert first.status_code == 202 and second.status_code == 200
    assert second.json() == {"job_id": first.json()["job_id"], "status": "enqueued",
                             "replayed": True, "duplicate": False}
    assert other.json()["job_id"] != first.json()["job_id"]
    assert Inspector(job_app.client.sync).stats().enqueued == 2


def test_concurrent_submits_with_one_key_make_one_job(api: BackgroundServer,
                                                      job_app: App) -> None:
    """T16: 30 simultaneous POSTs with the same key create exactly one job."""
    ids: list[str] = []
    barrier = threading.Barrier(30)

    def post() -> None:
        with client(api, ENQUEUE) as c:
            barrier.wait()
            r = c.post("/api/v1/jobs", json={"type": "echo"}, headers={"Idempotency-Key": "k"})
            ids.append(r.json()["job_id"])

    threads = [threading.Thread(target=post) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and len(ids) == 30
    assert Inspector(job_app.client.sync).stats().enqueued == 1


def test_batch_submit_is_all_or_nothing(c: httpx.Client, job_app: App) -> None:
    ok = c.post("/api/v1/jobs/batch", json={"jobs": [{"type": "echo", "args": [i]}
                                                     for i in range(3)]})
    assert ok.status_code == 202
    assert len({j["job_id"] for j in ok.json()["jobs"]}) == 3
    bad = c.post("/api/v1/jobs/batch", json={"jobs": [{"type": "echo"}, {"type": "nope"}]})
    assert bad.status_code == 422
    assert bad.json()["fields"][0]["field"] == "body.jobs[1].type"
    assert Inspector(job_app.client.sync).stats().enqueued == 3
    empty = c.post("/api/v1/jobs/batch", json={"jobs": []})
    assert empty.status_code == 422


def test_batch_with_idempotency_key_replays(c: httpx.Client) -> None:
    body = {"jobs": [{"type": "echo"}, {"type": "echo", "delay": 60}]}
    first = c.post("/api/v1/jobs/batch", json=body, headers={"Idempotency-Key": "b1"}).json()
    again = c.post("/api/v1/jobs/batch", json=body, headers={"Idempotency-Key": "b1"})
    assert again.status_code == 200
    assert [j["job_id"] for j in again.json()["jobs"]] == [j["job_id"] for j in first["jobs"]]
    assert [j["status"] for j in again.json()["jobs"]] == ["enqueued", "scheduled"]


def test_get_unknown_or_malformed_job_ids(c: httpx.Client) -> None:
    assert c.get("/api/v1/jobs/0123456789abcdef01234567").status_code == 404
    assert c.get("/api/v1/jobs/bad%20id!").status_code == 422


def test_cancel_then_cancel_again(c: httpx.Client, job_app: App) -> None:
    job_id = c.post("/api/v1/jobs", json={"type": "echo"}).json()["job_id"]
    r = c.post(f"/api/v1/jobs/{job_id}/cancel")
    assert r.json() == {"job_id": job_id, "previous_state": "enqueued", "state": "cancelled"}
    again = c.post(f"/api/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409 and "already ended cancelled" in again.json()["message"]
    assert c.post("/api/v1/jobs/0123456789abcdef01234567/cancel").status_code == 404
    drain(job_app)
    assert c.get(f"/api/v1/jobs/{job_id}").json()["state"] == "cancelled"


def test_dead_job_detail_and_retry(c: httpx.Client, job_app: App) -> None:
    job_id = c.post("/api/v1/jobs", json={"type": "boom", "args": ["it <broke>"],
                                          "kwargs": {"password": "hunter2"}}).json()["job_id"]
    drain(job_app)
    job = c.get(f"/api/v1/jobs/{job_id}").json()
    assert job["state"] == "dead" and job["found_in"] == "dead"
    assert job["error_class"] == "ValueError" and job["error_message"] == "it <broke>"
    assert job["kwargs"] == {"password": "[redacted]"}
    assert job["error_backtrace"] == []  # kept only for jobs sent with Sidekiq's backtrace option
    r = c.post(f"/api/v1/jobs/{job_id}/retry")
    assert r.status_code == 200 and r.json()["previous_state"] == "dead"
    assert Inspector(job_app.client.sync).set_size("dead") == 0
    assert c.post(f"/api/v1/jobs/{job_id}/retry").status_code == 404


def test_job_types(c: httpx.Client) -> None:
    types = c.get("/api/v1/job-types").json()
    assert [t["name"] for t in types] == ["boom", "echo", "slow"]
    assert next(t for t in types if t["name"] == "slow") == {
        "name": "slow", "queue": "slow", "retry": True, "timeout": None, "executor": "thread"}


def test_backtraces_in_sidekiq_format_are_decoded() -> None:
    from conveyor.api.routes_jobs import _backtrace
    from conveyor.retry import compress_backtrace

    lines = ["app.py:3:in `boom'", "worker.py:9:in `run'"]
    assert _backtrace(compress_backtrace(lines)) == lines
    assert _backtrace(lines) == lines
    assert _backtrace("not base64 zlib") == []
