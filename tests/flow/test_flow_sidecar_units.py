"""The sidecar-breaker registry shared by a worker's gate and its http executor (no Redis)."""

from __future__ import annotations

import pytest

from conveyor.executors.http import HttpExecutor
from conveyor.flow import Breaker
from conveyor.flow.sidecar import SidecarGuard, guard_for, register, unregister


def test_a_guard_is_found_by_the_function_table_it_serves() -> None:
    functions: dict[str, object] = {}
    guard = register(functions, "http", SidecarGuard("http://127.0.0.1:9292", Breaker()))
    try:
        assert guard.name == "sidecar:http://127.0.0.1:9292"
        assert guard_for(functions, "http") is guard
        assert guard_for({}, "http") is None  # another app's table sees nothing
    finally:
        unregister(functions, "http", guard)
    assert guard_for(functions, "http") is None


def test_two_executors_of_one_sidecar_share_a_guard_and_different_sidecars_share_none() -> None:
    functions: dict[str, object] = {}
    a = register(functions, "http", SidecarGuard("billing", Breaker()))
    b = register(functions, "http", SidecarGuard("billing", Breaker()))
    assert a is b and guard_for(functions, "http") is a
    c = register(functions, "http", SidecarGuard("search", Breaker()))
    assert guard_for(functions, "http") is None  # ambiguous: both fall back to local breakers
    for g in (a, b, c):
        unregister(functions, "http", g)
    assert guard_for(functions, "http") is None


def test_a_guard_carries_the_executors_verdict_to_the_gate() -> None:
    guard = SidecarGuard("sidecar:x", Breaker())
    assert not guard.covers("j1")
    guard.note("j1", "failure")  # not admitted by a gate: ignored
    guard.admitted("j1")
    assert guard.covers("j1") and guard.peek("j1") == "neutral"
    guard.note("j1", "failure")
    assert guard.settle("j1") == "failure" and not guard.covers("j1")
    with pytest.raises(ValueError):
        guard.note("j1", "maybe")


def test_the_executor_shares_its_breaker_only_for_a_sidecar_others_can_call() -> None:
    by_url = HttpExecutor({}, url="http://127.0.0.1:9292/", failure_threshold=3,
                          reset_after_s=2.0)
    assert by_url.guard is not None and by_url.guard.name == "sidecar:http://127.0.0.1:9292"
    assert (by_url.guard.policy.failures, by_url.guard.policy.open_s) == (3, 2.0)
    named = HttpExecutor({}, command="sidecar --port {port}", name="billing")
    assert named.guard is not None and named.guard.name == "sidecar:billing"
    private = HttpExecutor({}, command="sidecar --port {port}")
    assert private.guard is None  # supervised and unnamed: the local breaker only
