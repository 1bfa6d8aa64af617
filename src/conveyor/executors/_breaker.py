"""A circuit breaker for calls to a sidecar: closed, open, half-open.

Closed: calls go through; ``failure_threshold`` infrastructure failures in a row (the sidecar
unreachable, dropping the connection, answering 5xx) open it. Open: calls fail at once with
:class:`CircuitOpen` for ``reset_after_s`` seconds. Half-open: up to ``half_open_calls`` probe
calls go through; a success closes the breaker, a failure opens it again. A job that raises is a
success here: the sidecar worked. The breaker is local to one executor; it is a small class
with a clock passed in so that a shared (Redis) breaker can replace it behind the same methods.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

DEFAULT_FAILURE_THRESHOLD = 5
DEFAULT_RESET_AFTER_S = 5.0
DEFAULT_HALF_OPEN_CALLS = 1


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Counts consecutive failures and decides whether the next call may go through."""

    def __init__(self, failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
                 reset_after_s: float = DEFAULT_RESET_AFTER_S,
                 half_open_calls: int = DEFAULT_HALF_OPEN_CALLS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failure_threshold < 1 or half_open_calls < 1:
            raise ValueError("failure_threshold and half_open_calls must be at least 1")
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self.half_open_calls = half_open_calls
        self.clock = clock
        self.failures = 0
        self.opened = 0  # how many times it opened, for stats
        self._opened_at: float | None = None
        self._probes = 0

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self.clock() - self._opened_at < self.reset_after_s:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def allow(self) -> bool:
        """May a call go through now? (Takes a probe slot when half-open.)"""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and self._probes < self.half_open_calls:
            self._probes += 1
            return True
        return False

    def retry_in_s(self) -> float:
        """Seconds until the breaker lets a probe through (0 when it would now)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.reset_after_s - self.clock())

    def record_success(self) -> None:
        self.failures = 0
        self._opened_at = None
        self._probes = 0

    def record_failure(self) -> None:
        self.failures += 1
        state = self.state
        if state is BreakerState.HALF_OPEN or (
                state is BreakerState.CLOSED and self.failures >= self.failure_threshold):
            self._opened_at = self.clock()
            self._probes = 0
            self.opened += 1

    def record_neutral(self) -> None:
        """The call ended without telling us anything (cancelled): free its probe slot."""
        if self._probes:
            self._probes -= 1

    def reset(self) -> None:
        """Close the breaker (the supervisor saw the sidecar come back healthy)."""
        self.record_success()
