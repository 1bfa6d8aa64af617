"""Scenarios 5 (API side), 10 and 11 in CI, against the REST API run as its own process."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

pytest.importorskip("conveyor.api.server", reason="the REST API (issue 5) cannot be imported")

from redis_server import free_port

from .apiproc import ApiProc
from .results import write_result
from .rig import Rig
from .scenarios import api, auth

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(120)]
DEADLINE_S = 2.0
QUICK_S = 2.0  # an answer during an outage must come within this


@pytest.fixture
def served(make_rig: Callable[..., Rig]) -> Iterator[tuple[Rig, ApiProc]]:
    # appendfsync always: with everysec, Redis itself postpones its AOF write while a background
    # fsync is slow and still answers, so a SIGKILL then drops writes it acknowledged (measured by
    # bench/chaos/aof_window.py: 4 of 200 under a parallel fsync load, 0 with always). This test is
    # about the API's own path from a Redis reply to its 201, so Redis must not lose replies.
    rig = make_rig(proxy=True, appendfsync="always")
    proc = ApiProc(rig.url, free_port(), rig.log_dir, deadline_s=DEADLINE_S)
    try:
        yield rig, proc
    finally:
        proc.close()


def test_api_answers_quickly_while_redis_is_down_and_loses_no_created_job(
        served: tuple[Rig, ApiProc]) -> None:
    rig, proc = served
    result = api.outage(rig, proc, fault=rig.server.kill, heal=rig.server.start, outage_s=3.0)
    write_result({"profile": "fast", "fault": "redis_kill", **result})
    print(result)
    assert result["hangs"] == 0
    assert set(result["statuses"]) <= {"201", "202", "503"}
    assert result["latency_s_max"] < QUICK_S
    assert result["created_missing"] == 0


def test_api_answers_quickly_while_redis_is_cut_off(served: tuple[Rig, ApiProc]) -> None:
    rig, proc = served
    assert rig.proxy is not None
    result = api.outage(rig, proc, fault=rig.proxy.blackhole, heal=rig.proxy.heal, outage_s=6.0)
    write_result({"profile": "fast", "fault": "blackhole", **result})
    print(result)
    assert result["hangs"] == 0
    assert result["latency_s_max"] < QUICK_S
    assert result["created_missing"] == 0


def test_a_killed_api_loses_no_acknowledged_job_and_serves_again_once_restarted(
        make_rig: Callable[..., Rig]) -> None:
    # scenario 5's fault tools include SIGKILL of the API: its process dies mid-request
    rig = make_rig()
    port = free_port()
    result = api.killed(rig, lambda: ApiProc(rig.url, port, rig.log_dir, deadline_s=DEADLINE_S),
                        kills=3, every_s=1.5, down_s=0.5, clients=4)
    write_result({"profile": "fast", **result})
    print(result)
    assert result["outcomes"].get("acknowledged", 0) > 100  # the clients did get through
    assert result["lost"] == 0
    assert result["duplicated"] == 0
    assert result["unexpected"] == 0
    assert result["refused_stored"] == 0  # a refused connection sent nothing
    assert result["records_without_queue_entry"] == 0  # a cut submission is all or nothing
    assert set(result["outcomes"]) <= {"acknowledged", "refused", "indeterminate"}
    assert result["restart_to_serving_s_max"] < 20


def test_oversized_submissions_get_413_and_create_nothing(served: tuple[Rig, ApiProc]) -> None:
    rig, proc = served
    result = api.oversized(rig, proc)
    write_result({"profile": "fast", **result})
    print(result)
    assert " 413 " in result["declared_10mb"]["status"]
    assert result["declared_10mb"]["seconds"] < 0.1
    assert " 413 " in result["chunked_10mb"]["status"]
    assert result["just_over"]["status"] == 413
    assert result["just_under"]["status"] in (201, 202)
    assert result["jobs_created"] == 1  # the one just under the limit, nothing partial


def test_slow_clients_are_cut_at_the_deadline_and_others_are_served(
        served: tuple[Rig, ApiProc]) -> None:
    _, proc = served
    result = api.slowloris(proc, connections=100, trickle_every_s=0.5, duration_s=6.0)
    write_result({"profile": "fast", **result})
    print(result)
    assert result["held_s_max"] <= DEADLINE_S + 1.5
    assert result["probe_success_rate"] >= 0.99
    assert result["probe_s_p99"] < 1.0


def test_every_mutating_route_refuses_unauthenticated_and_cross_site_requests(
        served: tuple[Rig, ApiProc]) -> None:
    rig, proc = served
    result = auth.matrix(rig, proc)
    write_result({"profile": "fast", **result})
    print(result)
    assert result["mutating_routes"] >= 10, "the route walk found too few routes"
    assert result["violations"] == []
    assert not result["get_side_effects"]
    assert result["controls"]["admin_token"]["changed"], "the positive control changed nothing"
    assert result["controls"]["same_origin_session"]["changed"]
