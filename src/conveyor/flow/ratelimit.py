"""Rate limits: at most N job starts per period, across every worker, per job type or per key.

Two algorithms, both kept in Redis and checked atomically by ``admit.lua``:

* ``window`` (the default): a sliding-window log. Every admission is a timestamped entry; a job
  starts only when fewer than N entries are younger than the period. No period-long window ever
  holds more than N starts (the Redis clock decides), at the cost of one entry per start.
* ``bucket``: a token bucket holding up to ``burst`` tokens (N by default), refilled at N per
  period. Constant memory and smoother; after an idle spell up to ``burst`` jobs start at once,
  so a window of one period can see ``burst + N`` starts.

Written as text: ``"10/s"``, ``"100/m"``, ``"5/2s"``, ``"1000/h bucket"``, ``"10/s bucket 30"``
(burst 30). A job over its limit is deferred (see ``gate.py``), never failed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from ..errors import ConfigurationError
from .keytemplate import KeyTemplate

PERIOD_UNITS_S = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0,
                  "d": 86400.0}
MIN_PERIOD_S = 0.01
_TEXT = re.compile(
    r"^\s*(\d+)\s*/\s*(\d*\.?\d*)\s*([a-z]+)\s*(?:(window|bucket)(?:\s+(\d+))?)?\s*$")

# Rate texts :meth:`RateLimit.parse` accepts, lower case, with a period of at least
# MIN_PERIOD_S, as a JSON-schema pattern (the REST API's; slightly stricter than the parser).
TEXT_PATTERN = (r"^ *[1-9][0-9]{0,8} */ *"
                r"(?:(?:[1-9][0-9]{0,5}(?:\.[0-9]{1,3})?|0?\.[1-9][0-9]{0,2})? *(?:s|sec|m|min|h|d)"
                r"|[1-9][0-9]{1,5} *ms)"
                r"(?: +(?:window|bucket)(?: +[1-9][0-9]{0,8})?)? *$")

Algorithm = Literal["window", "bucket"]


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` starts per ``period_s`` seconds for every job sharing ``key``.

    ``key`` is a key template (see ``keytemplate.py``); None means one limit for the job type.
    Give the same ``key`` to several job types to make them share one limit.
    """

    limit: int
    period_s: float = 1.0
    key: str | None = None
    algorithm: Algorithm = "window"
    burst: int | None = None

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ConfigurationError(f"rate limit must allow at least 1 job, got {self.limit}")
        if self.period_s < MIN_PERIOD_S:
            raise ConfigurationError(f"rate limit period must be at least {MIN_PERIOD_S}s, "
                                     f"got {self.period_s}")
        if self.algorithm not in ("window", "bucket"):
            raise ConfigurationError(f"rate limit algorithm must be 'window' or 'bucket', "
                                     f"got {self.algorithm!r}")
        if self.burst is not None and self.burst < 1:
            raise ConfigurationError(f"rate limit burst must be at least 1, got {self.burst}")
        if self.key is not None:
            KeyTemplate(self.key)

    @classmethod
    def parse(cls, text: str, key: str | None = None) -> RateLimit:
        """``"10/s"``, ``"100/m"``, ``"5/2s"``, ``"1000/h bucket"`` or ``"10/s bucket 30"``."""
        m = _TEXT.match(text.lower())
        if m is None or m.group(3) not in PERIOD_UNITS_S:
            raise ConfigurationError(
                f"rate limit {text!r} is not understood; write it like '10/s', '100/m', "
                f"'5/2s' or '10/s bucket 30' (units: {', '.join(PERIOD_UNITS_S)})")
        count, times, unit, algorithm, burst = m.groups()
        period = float(times or 1) * PERIOD_UNITS_S[unit]
        kind: Algorithm = "bucket" if algorithm == "bucket" else "window"
        return cls(int(count), period, key, kind, int(burst) if burst else None)

    @classmethod
    def coerce(cls, value: Any) -> RateLimit:
        if isinstance(value, RateLimit):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, Mapping):
            return cls(**value)
        raise ConfigurationError(f"rate_limit must be text like '10/s' or a RateLimit, "
                                 f"got {value!r}")

    @property
    def interval_s(self) -> float:
        """The average time between starts at full rate."""
        return self.period_s / self.limit

    def describe(self) -> str:
        period = f"{self.period_s:g}s"
        text = f"{self.limit}/{period} {self.algorithm}"
        return text + (f" burst {self.burst}" if self.burst else "")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def lua_check(self, redis_key: str, label: str) -> list[Any]:
        """The check as ``admit.lua`` reads it: kind, key, label, p1..p4."""
        period_ms = max(1, round(self.period_s * 1000))
        if self.algorithm == "window":
            return ["window", redis_key, label, self.limit, period_ms, 0, 0]
        return ["bucket", redis_key, label, self.limit, period_ms, self.burst or self.limit, 0]
