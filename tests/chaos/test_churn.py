"""Scenario 1 in CI: SIGKILL churn over 15 s, 2 workers, 1,000 jobs of 50-200 ms, fast leases."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .procs import FAST_ENV
from .results import write_result
from .rig import Rig
from .scenarios import churn

LEASE_S = float(FAST_ENV["CONVEYOR_LEASE_TTL_S"])
RECOVERER_S = float(FAST_ENV["CONVEYOR_RECOVERER_INTERVAL_S"]) * 1.2  # +20% jitter


@pytest.mark.chaos
@pytest.mark.slow
@pytest.mark.timeout(150)
def test_sigkill_churn_loses_nothing_and_bounds_duplicates(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    result = churn.run(rig, jobs=1000, workers=2, concurrency=4, duration_s=15, kill_every_s=2)
    write_result({"profile": "fast", **result})
    print(result)
    assert result["kills"] >= 6
    assert result["lost"] == 0, result["lost_ids"]
    assert result["unexpected"] == 0
    assert result["finished"] == 1000
    assert result["running_at_kills"] > 0, "no kill hit a running job: the test proved nothing"
    assert result["never_restarted"] == 0
    assert result["duplicated"] <= result["duplicate_bound"]
    assert result["dead"] == {}
    # a lost worker's jobs restart within one lease plus one recoverer tick (and scheduling slack)
    assert result["recovery_s_max"] < LEASE_S + RECOVERER_S + 1.0
