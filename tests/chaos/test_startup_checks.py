"""Startup checks (issue 9): refuse an evicting maxmemory-policy unless allowed; warn if AOF is off.

``test_backlog.py`` shows what an evicting policy does to acknowledged jobs.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .procs import wait_until
from .rig import Rig

pytestmark = [
    pytest.mark.chaos, pytest.mark.timeout(60),
]


def test_a_worker_refuses_a_redis_that_evicts_keys(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(redis_config={"maxmemory-policy": "allkeys-lru"})
    w = rig.worker("e")
    wait_until(lambda: not w.alive or rig.r.zcard("conveyor:leases"), 20, "exit or register")
    assert not w.alive and w.proc.returncode != 0
    assert "maxmemory-policy" in w.log_path.read_text()


def test_allow_eviction_runs_with_a_warning(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(redis_config={"maxmemory-policy": "allkeys-lru"})
    w = rig.worker("e", env={"CONVEYOR_ALLOW_EVICTION": "1"})
    wait_until(lambda: not w.alive or rig.r.zcard("conveyor:leases"), 20, "exit or register")
    assert w.alive
    assert "maxmemory-policy" in w.log_path.read_text()


def test_a_worker_warns_when_aof_is_off(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(appendonly=False)
    w = rig.worker("a")
    wait_until(lambda: not w.alive or rig.r.zcard("conveyor:leases"), 20, "exit or register")
    assert w.alive
    assert "AOF off" in w.log_path.read_text()
