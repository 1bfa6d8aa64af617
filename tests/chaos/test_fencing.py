"""Scenario 4 in CI: SIGSTOP and a network cut for 3 leases (fencing), a loop busy for 3 leases
(no false death), and workers whose clocks are 5 minutes off, with fast leases."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .procs import FAST_ENV
from .results import write_result
from .rig import Rig
from .scenarios import fencing, skew

LEASE_S = float(FAST_ENV["CONVEYOR_LEASE_TTL_S"])
PAUSE_S = 3 * LEASE_S

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(90)]


@pytest.mark.parametrize("variant", ["sigstop", "partition"])
def test_a_zombies_late_results_are_refused_and_change_nothing(
        make_rig: Callable[..., Rig], variant: str) -> None:
    rig = make_rig()
    result = fencing.zombie(rig, variant=variant, pause_s=PAUSE_S)
    write_result({"profile": "fast", **result})
    print(result)
    assert result["zombie_finished_late"], "the zombie never ran to the end: nothing was tested"
    assert result["late_results_refused"]
    assert result["ok_state"] == "completed"
    assert result["bad_state"] == "dead"
    assert result["dead_entries_for_bad"] == 1 and result["dead_total"] == 1
    assert result["retry_total"] == 0 and result["pending"] == 0
    assert result["ok_finishes"] == 2  # at-least-once: the side effect ran twice, state once
    assert result["worker_alive"]


def test_a_job_blocking_the_event_loop_past_its_lease_is_not_recovered(
        make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(executors="asyncio")
    result = fencing.busy_loop(rig, pause_s=PAUSE_S)
    write_result({"profile": "fast", **result})
    print(result)
    assert result["starts"] == 1
    assert not result["started_on_b"]
    assert result["state"] == "completed"
    assert result["worker_alive"]


def test_workers_with_wrong_clocks_neither_recover_live_jobs_nor_fire_schedules_off_time(
        make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(executors="thread")
    result = skew.run(rig, ahead_s=300, behind_s=300, lease_s=LEASE_S)
    write_result({"profile": "fast", **result})
    print(result)
    assert result["long_job_starts"] == 1, "a live job was recovered because of a skewed clock"
    assert result["scheduled_missed"] == 0 and result["scheduled_early"] == 0
    assert result["lateness_s_max"] < 1.0
