"""The circuit breaker, table-driven, on a clock driven by hand."""

from __future__ import annotations

import pytest

from conveyor.executors._breaker import BreakerState, CircuitBreaker

CLOSED, OPEN, HALF = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# Each step: an event ("ok", "fail", "neutral", "allow", "wait:<s>", "reset"), then the state
# expected after it and, for "allow", whether the call may go through.
CASES = {
    "failures below the threshold keep it closed": [
        ("fail", CLOSED, None), ("fail", CLOSED, None), ("allow", CLOSED, True)],
    "a success resets the count": [
        ("fail", CLOSED, None), ("fail", CLOSED, None), ("ok", CLOSED, None),
        ("fail", CLOSED, None), ("fail", CLOSED, None), ("allow", CLOSED, True)],
    "the threshold opens it and calls fail fast": [
        ("fail", CLOSED, None), ("fail", CLOSED, None), ("fail", OPEN, None),
        ("allow", OPEN, False), ("wait:9.9", OPEN, None), ("allow", OPEN, False)],
    "after the pause one probe goes through": [
        ("fail", CLOSED, None), ("fail", CLOSED, None), ("fail", OPEN, None),
        ("wait:10", HALF, None), ("allow", HALF, True), ("allow", HALF, False),
        ("ok", CLOSED, None), ("allow", CLOSED, True)],
    "a failed probe opens it again for a full pause": [
        ("fail", CLOSED, None), ("fail", CLOSED, None), ("fail", OPEN, None),
        ("wait:10", HALF, None), ("allow", HALF, True), ("fail", OPEN, None),
        ("wait:9", OPEN, None), ("allow", OPEN, False), ("wait:1", HALF, None)],
    "a cancelled probe frees its slot": [
        ("fail", CLOSED, None), ("fail", CLOSED, None), ("fail", OPEN, None),
        ("wait:10", HALF, None), ("allow", HALF, True), ("neutral", HALF, None),
        ("allow", HALF, True)],
    "late failures while open do not extend the pause": [
        ("fail", CLOSED, None), ("fail", CLOSED, None), ("fail", OPEN, None),
        ("wait:5", OPEN, None), ("fail", OPEN, None), ("wait:5", HALF, None)],
    "reset closes it at once (sidecar healthy again)": [
        ("fail", CLOSED, None), ("fail", CLOSED, None), ("fail", OPEN, None),
        ("reset", CLOSED, None), ("allow", CLOSED, True)],
}


@pytest.mark.parametrize("steps", list(CASES.values()), ids=list(CASES))
def test_breaker_transitions(steps):
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=10, clock=clock)
    for event, state, allowed in steps:
        if event.startswith("wait:"):
            clock.now += float(event.split(":")[1])
        elif event == "allow":
            assert breaker.allow() is allowed, (event, steps)
        else:
            {"ok": breaker.record_success, "fail": breaker.record_failure,
             "neutral": breaker.record_neutral, "reset": breaker.reset}[event]()
        assert breaker.state is state, (event, steps)


def test_retry_in_counts_down_and_opened_counts_openings():
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=10, clock=clock)
    assert breaker.retry_in_s() == 0
    breaker.record_failure()
    clock.now += 4
    assert breaker.retry_in_s() == pytest.approx(6)
    breaker.record_failure()  # while open: not a new opening
    assert breaker.opened == 1


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="at least 1"):
        CircuitBreaker(failure_threshold=0)
