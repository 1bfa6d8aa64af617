"""Concurrency limits: at most N jobs running at once, across every worker, per type or per key.

A distributed semaphore in Redis (a sorted set of holders, ``"<worker id>|<token>"``). A slot is
taken by ``admit.lua`` together with the job's other checks and given back when the job ends.
A slot whose worker has lost its lease (SIGKILL, a network cut) counts as free at the next check,
so a crashed worker's slots come back within its lease (``lease_ttl_s``, 10 s by default) without
any renewal traffic of their own: the worker's heartbeat already renews that lease.

A job refused for a full limit is held by its worker for a short poll when no other job of that
worker is already waiting on the same key, and otherwise deferred by ``recheck_s`` (plus jitter).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import ConfigurationError
from .keytemplate import KeyTemplate

CONCURRENCY_RECHECK_S = 1.0  # a deferred job comes back after 1-2 s (jittered)
CONCURRENCY_POLL_S = 0.1  # a held job asks again this often


@dataclass(frozen=True)
class ConcurrencyLimit:
    """At most ``limit`` jobs sharing ``key`` run at once (None: one limit for the job type)."""

    limit: int
    key: str | None = None
    recheck_s: float = CONCURRENCY_RECHECK_S
    poll_s: float = CONCURRENCY_POLL_S

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ConfigurationError(f"concurrency limit must be at least 1, got {self.limit}")
        if self.recheck_s <= 0 or self.poll_s <= 0:
            raise ConfigurationError("concurrency recheck_s and poll_s must be positive")
        if self.key is not None:
            KeyTemplate(self.key)

    @classmethod
    def coerce(cls, value: Any) -> ConcurrencyLimit:
        if isinstance(value, ConcurrencyLimit):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(value)
        if isinstance(value, Mapping):
            return cls(**value)
        raise ConfigurationError(f"concurrency_limit must be an int or a ConcurrencyLimit, "
                                 f"got {value!r}")

    def describe(self) -> str:
        return f"{self.limit} at once"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def lua_check(self, redis_key: str, label: str) -> list[Any]:
        return ["concurrency", redis_key, label, self.limit, round(self.recheck_s * 1000),
                round(self.poll_s * 1000), 0]
