"""Scenario 10, Redis side, in CI: a backlog against ``maxmemory`` with and without eviction."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from redis_server import free_port

from .apiproc import ApiProc
from .results import write_result
from .rig import Rig
from .scenarios import backlog

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(60)]


def test_a_full_redis_without_eviction_refuses_jobs_but_keeps_every_acknowledged_one(
        make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    result = backlog.run(rig, maxmemory="8mb", policy="noeviction")
    write_result({"profile": "fast", **result})
    print(result)
    assert result["refused_or_indeterminate"] > 0, "Redis never filled up: nothing was tested"
    assert "is full (maxmemory reached)" in result["client_error"]
    assert result["acknowledged_missing"] == 0
    assert result["evicted_keys"] == 0


def test_an_evicting_policy_loses_acknowledged_jobs(make_rig: Callable[..., Rig]) -> None:
    """Why the startup check refuses such a policy: this is what it would allow."""
    rig = make_rig()
    result = backlog.run(rig, maxmemory="8mb", policy="allkeys-lru", max_jobs=2_000)
    write_result({"profile": "fast", **result})
    print(result)
    assert result["evicted_keys"] > 0
    assert result["acknowledged_missing"] > 0


def test_the_api_pushes_back_before_redis_is_full_and_workers_still_drain(
        make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    api = ApiProc(rig.url, free_port(), rig.log_dir)
    try:
        result = backlog.api_pushback(rig, api, maxmemory="8mb")
    finally:
        api.close()
    write_result({"profile": "fast", **result})
    print(result)
    assert result["refusal"] == {"status": 503, "code": "redis_full", "retry_after": "5"}
    assert result["oom_refusals_before_pushback"] == 0, "Redis refused writes before the API did"
    assert result["accepted"] > 100 and result["accepted_missing"] == 0
    assert result["worker_alive"]
    assert result["accepted_after_drain"] == 202
