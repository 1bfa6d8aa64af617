"""Scenario 3 in CI: recovery time after SIGKILL for each executor, with fast leases.

The figures with shipping defaults come from ``bench/chaos/run.py recovery recovery_http``.

The http executor runs its jobs in a sidecar the worker launches and supervises itself
(``--sidecar-command``, the Python ``conveyor sidecar`` serving the chaos app). Finding F12: when
the worker is SIGKILLed, its sidecar sees its standard input close and stops *gracefully*, so it
finishes the job it was running (for up to ``--graceful``, 30 s by default) while the recovered
copy already runs on the other worker: measured, 1 orphan per kill, alive 4.5 s (the whole job)
after the kill with fast leases, and the old copy finished every time. The fix is outside the
chaos suite (docs/reliability.md, F12); when it lands, set ``SIDECAR_OUTLIVES_ITS_WORKER`` to
False and this test asserts 0 orphans for http as for the others.
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
SIDECAR_OUTLIVES_ITS_WORKER = True  # F12; flip to False once the sidecar dies with its worker


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
    orphans = rounds if executor == "http" and SIDECAR_OUTLIVES_ITS_WORKER else 0
    assert result["orphaned_children"] == orphans
    assert result["orphan_finishes"] == orphans  # the old copy ran to its end beside the new
    assert result["orphans_killed_by_test"] == 0 and result["children_left_at_close"] == 0
    # the lease was renewed at most one beat before the kill, so it expires within LEASE_S of it
    assert result["recovery_s_min"] >= LEASE_S - BEAT_S - 0.1
    assert result["recovery_s_max"] <= LEASE_S + RECOVERER_S + 0.5
