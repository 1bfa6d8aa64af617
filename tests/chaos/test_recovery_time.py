"""Scenario 3 in CI: recovery time after SIGKILL for each executor, with fast leases.

The figures with shipping defaults come from ``bench/chaos/run.py recovery``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .procs import FAST_ENV
from .results import write_result
from .rig import Rig
from .scenarios import recovery

LEASE_S = float(FAST_ENV["CONVEYOR_LEASE_TTL_S"])
BEAT_S = float(FAST_ENV["CONVEYOR_HEARTBEAT_INTERVAL_S"])
RECOVERER_S = float(FAST_ENV["CONVEYOR_RECOVERER_INTERVAL_S"]) * 1.2


@pytest.mark.chaos
@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize(("job_type", "executor"), [
    ("work", "thread"), ("work_async", "asyncio"), ("work_process", "process"),
    ("work_fork", "fork")])
def test_a_killed_workers_job_restarts_within_a_lease(make_rig: Callable[..., Rig],
                                                      job_type: str, executor: str) -> None:
    rig = make_rig(executors=executor)
    rounds = 2 if executor in ("thread", "asyncio") else 1  # children die with their worker
    result = recovery.run(rig, job_type=job_type, rounds=rounds, beat_s=BEAT_S, timeout_s=20,
                             job_s=3 * LEASE_S)
    write_result({"profile": "fast", **result})
    print(result)
    assert result["orphaned_children"] == 0
    # the lease was renewed at most one beat before the kill, so it expires within LEASE_S of it
    assert result["recovery_s_min"] >= LEASE_S - BEAT_S - 0.1
    assert result["recovery_s_max"] <= LEASE_S + RECOVERER_S + 0.5
