"""Scenarios 5 and 6 in CI: Redis SIGKILLed and restarted on its AOF under load; Redis cut off
behind the proxy for less than a lease (leases of 6 s here, so a 3 s cut is well inside one), and
for longer than the Redis client's 5 s socket timeout (leases of 15 s)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .procs import FAST_ENV
from .results import write_result
from .rig import Rig
from .scenarios import outage

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(120)]
LONG_LEASE_ENV = {**FAST_ENV, "CONVEYOR_LEASE_TTL_S": "6", "CONVEYOR_HEARTBEAT_INTERVAL_S": "1"}
VERY_LONG_LEASE_ENV = {**LONG_LEASE_ENV, "CONVEYOR_LEASE_TTL_S": "15"}


def test_redis_restart_on_aof_loses_no_acknowledged_job(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(appendonly=True)
    result = outage.restart(rig, kills=2, down_s=1.0, every_s=2.0)
    write_result({"profile": "fast", **result})
    print(result)
    assert result["lost"] == 0, result["lost_ids"]
    assert result["unexpected"] == 0
    assert result["workers_alive"] == result["workers"]
    assert all(r["first_start_after_up_s"] < 5 for r in result["restarts"])


@pytest.mark.parametrize("mode", ["blackhole", "reset"])
def test_redis_unreachable_for_less_than_a_lease(make_rig: Callable[..., Rig], mode: str) -> None:
    rig = make_rig(proxy=True, env=LONG_LEASE_ENV)
    result = outage.unreachable(rig, outage_s=3.0, mode=mode)
    write_result({"profile": "fast", **result})
    print(result)
    assert result["lost"] == 0 and result["unexpected"] == 0
    assert result["workers_alive"] == result["workers"]
    assert result["leases_lost"] == 0 and result["reruns"] == 0, "false recoveries"
    assert result["back_to_baseline_s"] is not None and result["back_to_baseline_s"] <= 3
    assert result["pickup_ms_after"] < max(50.0, 5 * result["pickup_ms_before"])


def test_no_worker_dies_when_redis_is_cut_off_past_the_socket_timeout(
        make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(proxy=True, env=VERY_LONG_LEASE_ENV)
    result = outage.unreachable(rig, outage_s=7.0, mode="blackhole", rate=50, drain_s=15)
    write_result({"profile": "fast", **result})
    print(result)
    assert result["workers_alive"] == result["workers"]
    assert result["drained"] and result["lost"] == 0
    assert result["leases_lost"] == 0 and result["reruns"] == 0


def test_the_heartbeat_thread_survives_a_refused_connection(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(proxy=True, env=LONG_LEASE_ENV)
    result = outage.unreachable(rig, outage_s=2.5, mode="reset", rate=20, beat_max_age_s=2.5,
                                drain_s=15)
    print(result)
    assert result["workers_alive"] == 2
    assert result["fresh_heartbeats"] == 2
