"""Scenario 3 in CI: recovery time after SIGKILL for each executor, with fast leases.

The figures with shipping defaults come from ``bench/chaos/run.py recovery recovery_http``.

The http executor runs its jobs in a sidecar the worker launches and supervises itself
(``--sidecar-command``, the Python ``conveyor sidecar`` serving the chaos app). Regression for
F12: when the worker was SIGKILLed, its sidecar saw its standard input close and stopped
*gracefully*, finishing the job it was running beside the recovered copy (1 orphan per kill,
alive for the whole job). It now exits at once, so no executor leaves an orphan.
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
# A worker with a sidecar starts it before fetching, which takes seconds on a loaded machine.
START_TIMEOUT_S = {"http": 60.0}


@pytest.mark.chaos
@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize(("job_type", "executor"), [
    ("work", "thread"), ("work_async", "asyncio"), ("work_process", "process"),
    ("work_fork", "fork"), ("work_http", "http")])
def test_a_killed_workers_job_restarts_within_a_lease(make_rig: Callable[..., Rig],
                                                      job_type: str, executor: str) -> None:
    rig = make_rig(executors=executor)
    rounds = 2 if executor in ("thread", "asyncio") else 1  # children die with their worker
    result = recovery.run(rig, job_type=job_type, rounds=rounds, beat_s=BEAT_S,
                          timeout_s=START_TIMEOUT_S.get(executor, 20.0), job_s=3 * LEASE_S)
    write_result({"profile": "fast", **result})
    print(result)
    # an orphan is a child of the killed worker still alive once its job was recovered; the
    # job lasts 3 leases, so an orphan that drains it outlives the recovery by ~2 leases
    assert result["orphaned_children"] == 0
    assert result["orphan_finishes"] == 0  # no old copy ran to its end beside the new one
    assert result["orphans_killed_by_test"] == 0 and result["children_left_at_close"] == 0
    # the lease was renewed at most one beat before the kill, so it expires within LEASE_S of it
    assert result["recovery_s_min"] >= LEASE_S - BEAT_S - 0.1
    assert result["recovery_s_max"] <= LEASE_S + RECOVERER_S + 0.5
