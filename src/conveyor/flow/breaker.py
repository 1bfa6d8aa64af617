"""Circuit breakers shared in Redis: closed, open, half-open, the same for every worker.

Closed: calls go through; ``failures`` failures in a row, or a failure rate of ``failure_rate``
over ``window_s`` (once ``min_calls`` calls were seen), open the breaker. Open: for ``open_s``
nothing goes through; jobs are deferred to the time the breaker lets a probe through (shown in
their status as ``scheduled_at`` and ``deferred_reason``), never failed or dead-lettered for it.
Half-open: up to ``half_open_probes`` calls at once go through as probes; a success closes the
breaker, a failed probe opens it again. A probe held by a worker that dies is freed with that
worker's lease.

Which outcomes count: a job that succeeds is a success; one that raises an exception matching
``trip_on`` (any ``Exception`` by default) is a failure; one that raises something else (a bad
input the dependency rejected, say) is a success for the dependency; a cancelled job is neutral.

Jobs use a breaker through their ``breaker=`` option (see ``gate.py``). Other callers, such as
the HTTP-sidecar executor, use :class:`SharedBreaker`: ``allow()`` before a call, ``record()``
after it, backed by the same scripts (``admit.lua``, ``breaker_record.lua``).
"""

from __future__ import annotations

import os
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ConfigurationError

BREAKER_FAILURES = 5
BREAKER_MIN_CALLS = 20
BREAKER_WINDOW_S = 60.0
BREAKER_WINDOW_BUCKETS = 10
BREAKER_OPEN_S = 30.0
BREAKER_HALF_OPEN_PROBES = 1
BREAKER_RECHECK_S = 1.0  # a job refused while probes run comes back after 1-2 s
BREAKER_POLL_S = 0.1
PROBE_TTL_S = 60.0  # a SharedBreaker probe slot expires after this long without record()


@dataclass(frozen=True)
class Breaker:
    """A circuit breaker policy; ``name`` defaults to the job type (give one to share it)."""

    name: str | None = None
    failures: int = BREAKER_FAILURES
    failure_rate: float | None = None
    min_calls: int = BREAKER_MIN_CALLS
    window_s: float = BREAKER_WINDOW_S
    open_s: float = BREAKER_OPEN_S
    half_open_probes: int = BREAKER_HALF_OPEN_PROBES
    recheck_s: float = BREAKER_RECHECK_S
    trip_on: tuple[type[BaseException], ...] = field(default=(Exception,), compare=False)

    def __post_init__(self) -> None:
        if self.failures < 0 or self.half_open_probes < 1 or self.min_calls < 1:
            raise ConfigurationError("breaker failures must be >= 0, half_open_probes and "
                                     "min_calls >= 1")
        if self.failure_rate is not None and not 0 < self.failure_rate <= 1:
            raise ConfigurationError(f"breaker failure_rate must be in (0, 1], "
                                     f"got {self.failure_rate}")
        if not self.failures and self.failure_rate is None:
            raise ConfigurationError("a breaker needs failures > 0 or a failure_rate")
        if self.open_s <= 0 or self.window_s <= 0 or self.recheck_s <= 0:
            raise ConfigurationError("breaker open_s, window_s and recheck_s must be positive")

    @classmethod
    def coerce(cls, value: Any) -> Breaker:
        if isinstance(value, Breaker):
            return value
        if value is True:
            return cls()
        if isinstance(value, Mapping):
            return cls(**value)
        raise ConfigurationError(f"breaker must be True, a Breaker or a dict, got {value!r}")

    def counts_as_failure(self, error: BaseException | None) -> bool:
        return error is None or isinstance(error, self.trip_on)

    def describe(self) -> str:
        parts = [f"{self.failures} in a row"] if self.failures else []
        if self.failure_rate is not None:
            parts.append(f"{self.failure_rate:.0%} of {self.min_calls}+ in {self.window_s:g}s")
        return f"opens after {' or '.join(parts)}; open {self.open_s:g}s"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("trip_on")
        return out

    def lua_check(self, redis_key: str, label: str) -> list[Any]:
        return ["breaker", redis_key, label, self.half_open_probes, round(self.recheck_s * 1000),
                round(BREAKER_POLL_S * 1000), 0]

    def record_args(self, name: str, outcome: str, probe: bool, holder: str) -> list[Any]:
        """ARGV of ``breaker_record.lua``."""
        rate = round((self.failure_rate or 0) * 1000)
        return [name, outcome, int(probe), holder, self.failures, rate, self.min_calls,
                round(self.window_s * 1000), BREAKER_WINDOW_BUCKETS, round(self.open_s * 1000)]


class SharedBreaker:
    """A Redis-backed breaker for any caller: ``allow()`` before a call, ``record()`` after.

    ``broker`` is a :class:`~conveyor.broker.SyncBroker`. Calls that ``allow()`` admitted as
    half-open probes are matched to ``record()`` calls in order; a probe never recorded frees
    itself after ``PROBE_TTL_S``. :class:`AsyncSharedBreaker` is the same over an AsyncBroker.
    """

    def __init__(self, broker: Any, policy: Breaker, name: str | None = None) -> None:
        self.broker = broker
        self.policy = policy
        self.name = name or policy.name or ""
        if not self.name:
            raise ConfigurationError("a SharedBreaker needs a name")
        self.key = broker.keys.breaker(self.name)
        self.owner = f"breaker-user-{os.urandom(6).hex()}"
        self.retry_in_s = 0.0
        self._probes: deque[str] = deque()
        self._calls = 0

    def _admit_args(self) -> tuple[list[str], list[Any], str]:
        self._calls += 1
        holder = f"{self.owner}|{self._calls}"
        keys = [self.broker.keys.leases, "", ""]
        args = [holder, round(PROBE_TTL_S * 1000), "", "", "", 0, 0, random.random(), 1,
                *self.policy.lua_check(self.key, f"breaker {self.name}")]
        return keys, args, holder

    def _after_admit(self, reply: list[Any], holder: str) -> bool:
        if int(reply[0]) == 1:
            if int(reply[1]):
                self._probes.append(holder)
            self.retry_in_s = 0.0
            return True
        self.retry_in_s = int(reply[1]) / 1000
        return False

    def _record_args(self, success: bool | None) -> tuple[list[str], list[Any]]:
        holder = self._probes.popleft() if self._probes else ""
        outcome = "neutral" if success is None else ("success" if success else "failure")
        args = self.policy.record_args(self.name, outcome, bool(holder), holder)
        return [self.key, self.broker.keys.breakers], args

    def allow(self) -> bool:
        """May a call go through now? When not, ``retry_in_s`` says when to ask again."""
        keys, args, holder = self._admit_args()
        return self._after_admit(self.broker.script("admit", keys, args), holder)

    def record(self, success: bool | None) -> str:
        """Record a call's outcome (None: neutral); returns the breaker's state after it."""
        state = self.broker.script("breaker_record", *self._record_args(success))
        return state.decode() if isinstance(state, bytes) else str(state)


class AsyncSharedBreaker(SharedBreaker):
    """:class:`SharedBreaker` over an :class:`~conveyor.broker.AsyncBroker`."""

    async def aallow(self) -> bool:
        keys, args, holder = self._admit_args()
        return self._after_admit(await self.broker.script("admit", keys, args), holder)

    async def arecord(self, success: bool | None) -> str:
        state = await self.broker.script("breaker_record", *self._record_args(success))
        return state.decode() if isinstance(state, bytes) else str(state)
