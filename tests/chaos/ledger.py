"""The ledger: what ran and what was submitted, kept outside the fault domain.

It lives in a second Redis that no test ever faults, so killing or restarting the Redis under
test cannot corrupt the measurement. Handlers append ``start`` and ``finish`` events; the test
appends ``kill``, ``stop``, ``cont`` and ``mark`` events. Every event is stamped by the ledger
server's own clock (Redis ``TIME`` inside the script), one clock for every process, so times
taken in different processes compare exactly and an offset clock in a worker cannot skew them.

An event is one line: ``kind uid label pid attempt ts`` (``-`` for a field that does not apply).
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import redis

EVENTS_KEY = "chaos:events"
_APPEND = """
local t = redis.call('TIME')
local ts = t[1] .. '.' .. string.format('%06d', t[2])
redis.call('RPUSH', KEYS[1], ARGV[1] .. ' ' .. ts)
return ts
"""


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    uid: str
    label: str
    pid: int
    attempt: int
    ts: float

    @classmethod
    def parse(cls, line: bytes) -> Event:
        kind, uid, label, pid, attempt, ts = line.decode().split(" ")
        return cls(kind, uid, label, int(pid) if pid != "-" else 0,
                   int(attempt) if attempt != "-" else 0, float(ts))


class Ledger:
    """Appends and reads events in the ledger server (thread-safe, fork-safe via redis-py)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.redis = redis.Redis.from_url(url)
        self._append = self.redis.register_script(_APPEND)

    def record(self, kind: str, uid: str = "-", label: str = "-", pid: int | str = "-",
               attempt: int | str = "-") -> float:
        """Append an event; return its ledger time (epoch seconds)."""
        ts = self._append(keys=[EVENTS_KEY], args=[f"{kind} {uid} {label} {pid} {attempt}"])
        return float(ts)

    def now(self) -> float:
        sec, usec = self.redis.time()
        return float(sec) + usec / 1e6

    def events(self, kinds: frozenset[str] | None = None) -> list[Event]:
        out = [Event.parse(line) for line in self.redis.lrange(EVENTS_KEY, 0, -1)]
        return [e for e in out if kinds is None or e.kind in kinds]

    def tail(self, n: int) -> list[Event]:
        return [Event.parse(line) for line in self.redis.lrange(EVENTS_KEY, -n, -1)]

    def count(self) -> int:
        return int(self.redis.llen(EVENTS_KEY))

    def reset(self) -> None:
        self.redis.delete(EVENTS_KEY)

    def close(self) -> None:
        self.redis.close()


@dataclass
class History:
    """What the submitting side saw for each job id: acknowledged, failed or indeterminate."""

    acknowledged: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    indeterminate: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, outcome: str, uids: list[str] | set[str]) -> None:
        with self.lock:
            getattr(self, outcome).update(uids)

    @property
    def attempted(self) -> set[str]:
        return self.acknowledged | self.failed | self.indeterminate


def runs(events: list[Event], kind: str) -> Counter[str]:
    """How many ``kind`` events each uid has."""
    return Counter(e.uid for e in events if e.kind == kind)


def by_uid(events: list[Event]) -> dict[str, list[Event]]:
    out: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        out[e.uid].append(e)
    return out
