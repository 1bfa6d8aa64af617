"""Periodic jobs: cron expressions (with a time zone) and fixed intervals.

An entry names a job type, its arguments and a schedule. Its *slots* are the instants it is due:
the times the cron expression matches in its time zone (``croniter``, daylight-saving changes
included; six fields add seconds), or every multiple of the interval since the Unix epoch (so
every scheduler computes the same slots). Declared in code with ``app.cron(...)`` /
``app.every(...)`` or added at run time through the admin facade (stored in
``conveyor:cron:entries``).

Exactly once: ``cron_fire.lua`` compares the slot with the entry's last fired slot and enqueues
in one atomic step, and slots only move forward, so however many schedulers run and whichever of
them crash, a slot is enqueued at most once; as long as one scheduler runs, at least once.

Catch-up policy. A slot is fired late (by whichever scheduler comes next) while it is at most
``grace_s`` old (60 s by default). Older slots were missed because no scheduler ran (downtime, or
a Redis outage); ``catch_up`` decides what happens to them when a scheduler comes back:

* ``"one"`` (default): a single run for all of them (the latest missed slot);
* ``"all"``: one run per missed slot, at most ``CATCH_UP_MAX_SLOTS``;
* ``"none"``: they are skipped.

A new entry starts with the first slot after it is first seen; it never fires the past.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import ConfigurationError

CRON_GRACE_S = 60.0
CATCH_UP_MAX_SLOTS = 100
CATCH_UP_POLICIES = ("one", "all", "none")
MIN_INTERVAL_S = 0.1
_NAME = re.compile(r"^[^\x00-\x1f]{1,200}$")
NAME_PATTERN = _NAME.pattern


def _cron_field(value: str) -> str:
    one = rf"(?:\*|(?:{value})(?:-(?:{value}))?)(?:/[1-9][0-9]?)?"
    return rf"(?:{one}(?:,{one})*)"


_MINUTE, _HOUR = r"[1-5]?[0-9]", r"1?[0-9]|2[0-3]"
_MONTH = r"[1-9]|1[0-2]|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
_WEEKDAY = r"[0-7]|SUN|MON|TUE|WED|THU|FRI|SAT"
# Cron expressions that always have a next slot, as a JSON-schema pattern (the REST API's): the
# usual five fields (six with seconds last), and days 29-31 only with every month, so that no
# expression names a date that never comes (croniter accepts "0 0 31 2 *", then finds no slot).
EXPRESSION_PATTERN = (
    rf"^{_cron_field(_MINUTE)} {_cron_field(_HOUR)} "
    rf"(?:{_cron_field(r'[1-9]|[12][0-9]|3[01]')} \*(?:/[1-9][0-9]?)?"
    rf"|{_cron_field(r'[1-9]|1[0-9]|2[0-8]')} {_cron_field(_MONTH)}) "
    rf"{_cron_field(_WEEKDAY)}(?: {_cron_field(_MINUTE)})?$")


def _croniter() -> Any:
    """croniter, imported on first use (it costs ~15 ms, and most apps declare no cron)."""
    from croniter import croniter

    return croniter


@dataclass(frozen=True)
class CronEntry:
    """One periodic job: give ``cron`` (an expression) or ``every_s`` (seconds), not both."""

    name: str
    job: str
    cron: str | None = None
    every_s: float | None = None
    tz: str = "UTC"
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str = "default"
    catch_up: str = "one"
    grace_s: float = CRON_GRACE_S
    enabled: bool = True
    source: str = "code"

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigurationError(f"cron entry name {self.name!r}: use 1-200 characters, "
                                     "no control characters")
        if (self.cron is None) == (self.every_s is None):
            raise ConfigurationError(f"cron entry {self.name!r}: give cron= or every_s=, "
                                     "exactly one")
        if self.cron is not None and not _croniter().is_valid(self.cron):
            raise ConfigurationError(f"cron entry {self.name!r}: {self.cron!r} is not a valid "
                                     "cron expression (5 fields, or 6 with seconds last)")
        if self.every_s is not None and self.every_s < MIN_INTERVAL_S:
            raise ConfigurationError(f"cron entry {self.name!r}: every_s must be at least "
                                     f"{MIN_INTERVAL_S}")
        if self.catch_up not in CATCH_UP_POLICIES:
            raise ConfigurationError(f"cron entry {self.name!r}: catch_up must be one of "
                                     f"{', '.join(CATCH_UP_POLICIES)}")
        if self.grace_s < 0:
            raise ConfigurationError(f"cron entry {self.name!r}: grace_s must be >= 0")
        self.zone()

    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigurationError(f"cron entry {self.name!r}: unknown time zone "
                                     f"{self.tz!r}") from None

    @property
    def schedule(self) -> str:
        return self.cron if self.cron is not None else f"every {self.every_s:g}s"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CronEntry:
        return cls(**dict(data))

    # --- slots (ms since the epoch) ----------------------------------------------------------
    def slots_before(self, now_ms: int, stop_after_ms: int, limit: int) -> list[int]:
        """Slots at or before ``now_ms`` and after ``stop_after_ms``, newest first, at most
        ``limit`` of them."""
        out: list[int] = []
        if self.every_s is not None:
            step = round(self.every_s * 1000)
            slot = now_ms - now_ms % step
            while slot > stop_after_ms and len(out) < limit:
                out.append(slot)
                slot -= step
            return out
        start = datetime.fromtimestamp(math.floor(now_ms / 1000) + 1, self.zone())
        it = _croniter()(self.cron, start)
        while len(out) < limit:
            slot = round(it.get_prev(float) * 1000)
            if slot <= stop_after_ms:
                break
            if slot <= now_ms:
                out.append(slot)
        return out

    def latest_slot(self, now_ms: int) -> int:
        """The newest slot at or before ``now_ms`` (0 when none in the last year)."""
        found = self.slots_before(now_ms, now_ms - 366 * 86400 * 1000, 1)
        return found[0] if found else 0

    def next_slot(self, after_ms: int) -> int:
        """The first slot after ``after_ms``."""
        if self.every_s is not None:
            step = round(self.every_s * 1000)
            return after_ms - after_ms % step + step
        start = datetime.fromtimestamp(after_ms / 1000, self.zone())
        return round(_croniter()(self.cron, start).get_next(float) * 1000)

    def due(self, last_ms: int, now_ms: int) -> list[int]:
        """Slots to fire now, oldest first, given the last fired one and the catch-up policy."""
        grace_ms = round(self.grace_s * 1000)
        recent = self.slots_before(now_ms, max(last_ms, now_ms - grace_ms - 1), CATCH_UP_MAX_SLOTS)
        older_than = now_ms - grace_ms - 1
        missed: Sequence[int] = ()
        if self.catch_up != "none" and older_than > last_ms:
            limit = 1 if self.catch_up == "one" else CATCH_UP_MAX_SLOTS
            missed = self.slots_before(older_than, last_ms, limit)
        return sorted([*missed, *recent])
