"""Prometheus metrics of the API (read through the facade) and of a worker (its observer hook),
checked against real Redis state, and every exported name checked against docs/metrics.md."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from conveyor.admin import Inspector
from conveyor.executors import create_executor
from conveyor.metrics import WorkerMetrics, serve_metrics
from conveyor.testing import drain
from conveyor.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parent / "api"))
from api_helpers import (
    READ,
    WorkerThread,
    client,
    make_app,
    running_api,
    wait_until,
)

from executors.helpers import until

DOC = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def test_api_metrics_reflect_redis(redis_url: str) -> None:
    app = make_app(redis_url)
    for i in range(3):
        app.enqueue("echo", args=[i])
    app.enqueue("boom", args=["x"])
    drain(app)
    app.enqueue("echo")
    app.enqueue("echo")
    app.enqueue("echo", delay=600)
    with running_api(app) as server, client(server, READ) as c:
        c.post("/api/v1/queues/default/pause")  # 403 for a read token: counted too
        c.get("/api/v1/stats")
        found = samples(c.get("/metrics").text)
    assert value(found, "conveyor_redis_up") == 1
    assert value(found, "conveyor_queue_depth", queue="default") == 2
    assert value(found, "conveyor_queue_paused", queue="default") == 0
    assert value(found, "conveyor_set_size", set="dead") == 1
    assert value(found, "conveyor_set_size", set="scheduled") == 1
    assert value(found, "conveyor_processed_jobs_total") == 4
    assert value(found, "conveyor_failed_jobs_total") == 1
    assert value(found, "conveyor_workers") == 0
    assert value(found, "conveyor_api_requests_total", method="GET", route="/api/v1/stats",
                 status="200") == 1
    assert value(found, "conveyor_api_requests_total", method="POST",
                 route="/api/v1/queues/{name}/pause", status="403") == 1
    app.close()


def test_workers_appear_in_api_metrics(redis_url: str) -> None:
    app = make_app(redis_url)
    app.enqueue("slow", args=[2.0])
    with running_api(app) as server, client(server, READ) as c, WorkerThread(
            app, concurrency=4) as worker:
        found = wait_until(lambda: (f := samples(c.get("/metrics").text)).get(
            ("conveyor_worker_busy", frozenset({("worker", worker.identity)}))) == 1 and f,
            what="a busy worker in the metrics")
        assert value(found, "conveyor_worker_concurrency", worker=worker.identity) == 4
        assert value(found, "conveyor_worker_utilisation_ratio", worker=worker.identity) == 0.25
    app.close()


def test_metrics_need_a_token_unless_public(redis_url: str) -> None:
    app = make_app(redis_url)
    with running_api(app) as server:
        assert httpx.get(server.url + "/metrics").status_code == 401
    with running_api(app, metrics_public=True) as server:
        r = httpx.get(server.url + "/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    app.close()


def test_cut_connections_are_counted(redis_url: str) -> None:
    app = make_app(redis_url)
    with running_api(app, receive_deadline_s=0.3) as server, client(server, READ) as c:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            sock.settimeout(5)
            assert sock.recv(100).startswith(b"HTTP/1.1 408")
        found = samples(c.get("/metrics").text)
    assert value(found, "conveyor_api_connections_cut_total", reason="headers") == 1
    app.close()


def _documented() -> set[str]:
    return set(re.findall(r"`(conveyor_[a-z0-9_]+)`", DOC.read_text()))


def _family_names(text: str) -> set[str]:
    return {f.name for f in text_string_to_metric_families(text)}


def test_every_metric_is_prefixed_and_documented(redis_url: str) -> None:
    app = make_app(redis_url)
    app.enqueue("echo")
    wm = WorkerMetrics()
    worker = Worker(app, concurrency=2)
    wm.bind(worker)
    worker.running = {}
    names = _family_names(generate_latest(wm.registry).decode())
    with running_api(app) as server, client(server, READ) as c:
        names |= _family_names(c.get("/metrics").text)
    ours = {n for n in names if not n.startswith(("python_", "process_"))}
    assert all(n.startswith("conveyor_") for n in ours), ours
    missing = {n for n in ours if n not in _documented()}
    assert not missing, f"not in docs/metrics.md: {sorted(missing)}"
    app.close()


def test_worker_metrics_count_runs_by_outcome(redis_url: str) -> None:
    app = make_app(redis_url)
    for i in range(3):
        app.enqueue("echo", args=[i])
    app.enqueue("boom", args=["no"])
    wm = WorkerMetrics()
    with WorkerThread(app, concurrency=4, observers=[wm]) as worker:
        wait_until(lambda: worker.processed + worker.failed == 4, what="4 runs")
        server = serve_metrics(wm.registry, 0)
        port = server.server_address[1]
        found = samples(httpx.get(f"http://127.0.0.1:{port}/metrics").text)
        server.shutdown()
        server.server_close()
    assert value(found, "conveyor_jobs_total", queue="default", type="echo",
                 outcome="completed") == 3
    assert value(found, "conveyor_jobs_total", queue="default", type="boom", outcome="dead") == 1
    assert value(found, "conveyor_job_duration_seconds_count", queue="default", type="echo") == 3
    assert value(found, "conveyor_job_wait_seconds_count", queue="default") == 4
    assert value(found, "conveyor_executor_queue_seconds_count", executor="thread") == 4
    assert value(found, "conveyor_worker_capacity") == 4
    assert value(found, "conveyor_executor_tasks_total", executor="thread", outcome="ok") == 3
    assert value(found, "conveyor_executor_tasks_total", executor="thread", outcome="failed") == 1
    assert value(found, "conveyor_recovered_jobs_total") == 0
    app.close()


def test_a_failing_observer_does_not_hurt_the_job(redis_url: str) -> None:
    class Broken:
        def job_started(self, job: object, spec: object) -> None:
            raise RuntimeError("observer bug")

        def job_finished(self, *args: object) -> None:
            raise RuntimeError("observer bug")

    app = make_app(redis_url)
    handle = app.enqueue("echo", args=[1])
    with WorkerThread(app, concurrency=1, observers=[Broken()]):
        assert handle.result(timeout=10) == {"args": [1], "kwargs": {}}
    app.close()


def test_jobs_dead_lettered_without_running_are_counted_by_reason(redis_url: str) -> None:
    app = make_app(redis_url)
    broker = app.client.sync
    broker.redis.lpush(broker.keys.queue("default"), b"{not json")
    broker.redis.lpush(broker.keys.queue("default"),
                       json.dumps({"class": "nobody.handles.this", "args": [], "jid": "u1"}))
    for i in range(3):
        app.enqueue("echo", args=[i])
    ins = Inspector(broker)
    wm = WorkerMetrics()
    with running_api(app) as server, client(server, READ) as c, WorkerThread(
            app, concurrency=2, observers=[wm]):
        wait_until(lambda: ins.set_size("dead") == 2, what="two dead-lettered entries")
        # the API side reads the summaries the worker publishes with its heartbeat
        def published() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
            f = samples(c.get("/metrics").text)
            wanted = [("conveyor_recent_jobs", ("outcome", "completed"), 3)] + [
                ("conveyor_recent_dead_lettered_jobs", ("reason", r), 1)
                for r in ("MalformedJob", "UnknownJobType")]
            return f if all(f.get((n, frozenset({lab}))) == v for n, lab, v in wanted) else None

        api_side = wait_until(published, what="the worker's published summary in the API")
        worker_side = samples(generate_latest(wm.registry).decode())
    for reason in ("MalformedJob", "UnknownJobType"):
        assert value(worker_side, "conveyor_dead_lettered_jobs_total", queue="default",
                     reason=reason) == 1
        assert value(api_side, "conveyor_recent_dead_lettered_jobs", reason=reason) == 1
    assert value(worker_side, "conveyor_jobs_total", queue="default", type="echo",
                 outcome="completed") == 3
    assert value(api_side, "conveyor_recent_reporting_workers") == 1
    for q in ("0.5", "0.95", "0.99"):
        assert 0 <= value(api_side, "conveyor_recent_job_duration_seconds", quantile=q) < 1
        assert value(api_side, "conveyor_recent_job_wait_seconds", quantile=q) >= 0
    app.close()


def test_executor_run_time_and_health_by_the_executor_that_ran_the_job(redis_url: str) -> None:
    app = make_app(redis_url)
    app.enqueue("echo", args=[1])
    app.enqueue("echo", args=[2])
    app.enqueue("slow", args=[0.01])
    wm = WorkerMetrics()
    with WorkerThread(app, concurrency=2, observers=[wm],
                      queue_executors={"default": "asyncio"}) as worker:
        wait_until(lambda: worker.processed == 3, what="3 runs")
        found = samples(generate_latest(wm.registry).decode())
    # echo is a thread job, but --executor default=asyncio ran it on the loop
    assert value(found, "conveyor_executor_run_seconds_count", executor="asyncio") == 2
    assert value(found, "conveyor_executor_queue_seconds_count", executor="asyncio") == 2
    assert value(found, "conveyor_executor_run_seconds_count", executor="thread") == 1
    assert value(found, "conveyor_executor_healthy", executor="thread") == 1
    assert value(found, "conveyor_executor_healthy", executor="asyncio") == 1
    assert value(found, "conveyor_executor_capacity", executor="asyncio") == 2
    app.close()


@pytest.mark.chaos  # kills the sidecar it started, to see the health gauge drop and recover
async def test_the_http_executor_health_follows_its_supervised_sidecar(redis_url: str) -> None:
    from executors import sidecars

    app = make_app(redis_url)
    ex = create_executor("http", {}, 2, command=sidecars.python_command(),
                         env=sidecars.SIDECAR_ENV)
    await ex.start()
    try:
        worker = Worker(app, concurrency=2)
        worker.running = {}
        worker.executors = {"http": ex}
        wm = WorkerMetrics()
        wm.bind(worker)

        def health() -> float:
            found = samples(generate_latest(wm.registry).decode())
            return value(found, "conveyor_executor_healthy", executor="http")

        assert health() == 1
        supervisor = ex.supervisor  # type: ignore[attr-defined]
        os.kill(supervisor.pid, signal.SIGKILL)
        await until(lambda: not supervisor.healthy, what="the supervisor to see it die")
        assert health() == 0
        await until(lambda: supervisor.healthy, timeout_s=30, what="the sidecar to come back")
        assert health() == 1 and ex.stats().restarts == 1
    finally:
        await ex.stop(0)
    app.close()
