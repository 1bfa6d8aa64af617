"""A job type's flow policy: its rate limits, concurrency limits and circuit breaker.

Declared on the job::

    @app.job(rate_limit="10/s", concurrency_limit=3, breaker=Breaker(failures=5, open_s=30))

or, for several or keyed limits, with the classes: ``rate_limit=[RateLimit.parse("100/s"),
RateLimit(10, key="tenant:{args.tenant_id}")]``. At run time the admin facade (API, CLI) stores
an override per job type in ``conveyor:flow:policies``; each field it names replaces the declared
one (``null`` removes it) and workers pick it up within ``POLICY_REFRESH_S``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ConfigurationError
from .breaker import Breaker
from .concurrency import ConcurrencyLimit
from .ratelimit import RateLimit

POLICY_REFRESH_S = 2.0  # how soon a limit set at run time reaches every worker
OPTION_NAMES = ("rate_limit", "concurrency_limit", "breaker")


def _many(value: Any) -> Iterable[Any]:
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        return value
    return (value,)


@dataclass(frozen=True)
class FlowPolicy:
    """Everything that decides whether a job of one type may start now."""

    rate_limits: tuple[RateLimit, ...] = ()
    concurrency_limits: tuple[ConcurrencyLimit, ...] = ()
    breaker: Breaker | None = None

    @property
    def empty(self) -> bool:
        return not (self.rate_limits or self.concurrency_limits or self.breaker)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> FlowPolicy:
        """The policy given by ``@app.job(...)`` options (other options are ignored)."""
        return cls(
            tuple(RateLimit.coerce(v) for v in _many(options.get("rate_limit"))),
            tuple(ConcurrencyLimit.coerce(v) for v in _many(options.get("concurrency_limit"))),
            Breaker.coerce(options["breaker"]) if options.get("breaker") else None,
        )

    def override(self, runtime: Mapping[str, Any]) -> FlowPolicy:
        """This policy with the fields a run-time override names replaced."""
        policy = self
        if "rate_limit" in runtime:
            policy = replace(policy, rate_limits=tuple(
                RateLimit.coerce(v) for v in _many(runtime["rate_limit"])))
        if "concurrency_limit" in runtime:
            policy = replace(policy, concurrency_limits=tuple(
                ConcurrencyLimit.coerce(v) for v in _many(runtime["concurrency_limit"])))
        if "breaker" in runtime:
            value = runtime["breaker"]
            trip_on = self.breaker.trip_on if self.breaker else (Exception,)
            policy = replace(policy, breaker=replace(Breaker.coerce(value), trip_on=trip_on)
                             if value else None)
        return policy

    def to_json(self) -> dict[str, Any]:
        return {
            "rate_limit": [r.to_json() for r in self.rate_limits],
            "concurrency_limit": [c.to_json() for c in self.concurrency_limits],
            "breaker": self.breaker.to_json() if self.breaker else None,
        }

    def describe(self) -> list[str]:
        out = [f"rate {r.describe()}" for r in self.rate_limits]
        out += [f"concurrency {c.describe()}" for c in self.concurrency_limits]
        if self.breaker:
            out.append(f"breaker {self.breaker.describe()}")
        return out


def check_options(options: Mapping[str, Any]) -> None:
    """Raise ConfigurationError now (at ``@app.job`` time) for a policy that cannot work."""
    FlowPolicy.from_options(options)
    unique = options.get("unique")
    if unique is not None:
        from .unique import Unique

        Unique.coerce(unique)


def normalize_override(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a run-time override and return it as stored (JSON-ready)."""
    unknown = set(changes) - set(OPTION_NAMES)
    if unknown:
        raise ConfigurationError(f"unknown flow option(s) {', '.join(sorted(unknown))}; "
                                 f"known: {', '.join(OPTION_NAMES)}")
    policy = FlowPolicy().override(changes)
    out: dict[str, Any] = {}
    if "rate_limit" in changes:
        out["rate_limit"] = [r.to_json() for r in policy.rate_limits] or None
    if "concurrency_limit" in changes:
        out["concurrency_limit"] = [c.to_json() for c in policy.concurrency_limits] or None
    if "breaker" in changes:
        out["breaker"] = policy.breaker.to_json() if policy.breaker else None
    return out
