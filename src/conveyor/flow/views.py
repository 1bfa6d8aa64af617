"""What the admin facade shows of flow control: read models and the reads that fill them.

These read the keys that the flow scripts write (the layout belongs to this package); the API,
CLI and dashboard reach them only through ``Inspector.flow`` (``flow/admin.py``). Every return
value is a dataclass the API serialises as it is. Times are epoch seconds on the Redis clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..job import loads

EVENTS_SHOWN = 20
EVENTS_KEPT = 100  # breaker_record.lua and admit.lua trim a breaker's event log to this


@dataclass(frozen=True)
class RateUsage:
    key: str
    algorithm: str
    limit: int
    period_s: float
    used: float  # starts in the current window, or tokens spent (bucket)
    next_free_s: float  # seconds until one more job may start (0: now)


@dataclass(frozen=True)
class ConcurrencyUsage:
    key: str
    limit: int
    running: int
    holders: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LimitInfo:
    """One limit of one job type: where it comes from, its key and, for a fixed key, its use."""

    job_type: str
    kind: str  # rate | concurrency
    key: str
    description: str
    source: str  # declared | runtime
    usage: RateUsage | ConcurrencyUsage | None = None


@dataclass(frozen=True)
class PolicyInfo:
    job_type: str
    declared: dict[str, Any] | None
    runtime: dict[str, Any] | None
    effective: list[str]


@dataclass(frozen=True)
class BreakerInfo:
    name: str
    state: str  # closed | open | half-open
    failures: int
    opened_count: int
    opened_at: float | None
    open_until: float | None
    retry_in_s: float
    probes: int
    window_calls: int
    window_failures: int
    events: list[tuple[float, str]] = field(default_factory=list)


@dataclass(frozen=True)
class CronInfo:
    name: str
    job: str
    schedule: str
    tz: str
    queue: str
    catch_up: str
    enabled: bool
    source: str
    last_slot: float | None
    next_slot: float | None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkflowNode:
    id: str
    kind: str  # job | chain | group
    parent: str | None
    state: str  # pending | active | completed | failed
    jid: str = ""
    name: str = ""
    outcome: Any = None


@dataclass(frozen=True)
class WorkflowInfo:
    id: str
    state: str  # active | completed | failed
    created_at: float | None
    finished_at: float | None
    result: Any
    outcome: Any
    nodes: list[WorkflowNode] = field(default_factory=list)

    @property
    def jobs(self) -> list[WorkflowNode]:
        return [n for n in self.nodes if n.kind == "job"]


@dataclass(frozen=True)
class WorkflowSummary:
    """A workflow without its nodes, for lists."""

    id: str
    state: str  # active | completed | failed
    created_at: float | None
    finished_at: float | None


@dataclass(frozen=True)
class UniqueLock:
    key: str
    jid: str
    ttl_s: float


@dataclass(frozen=True)
class Deferral:
    """What flow control did to one job: from its status record (``admit.lua`` writes it).

    ``deferrals`` counts the times it was sent back to the schedule (not failures, not
    retries); ``deferred_reason`` and ``deferred_at`` are the last one's; ``admitted_at`` is when
    the gate last let it start; ``scheduled_at`` is when a deferred job will be tried again.
    """

    jid: str
    state: str
    deferrals: int
    deferred_reason: str
    deferred_at: float | None
    admitted_at: float | None
    scheduled_at: float | None


def redis_now_ms(r: Any) -> int:
    seconds, micros = r.time()
    return int(seconds) * 1000 + int(micros) // 1000


def _text(h: dict[bytes, bytes], name: str, default: str = "") -> str:
    value = h.get(name.encode())
    return value.decode("utf-8", "replace") if value is not None else default


def _json(text: str) -> Any:
    if not text:
        return None
    try:
        return loads(text)
    except ValueError:
        return text


def _seconds(text: str) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def read_deferral(broker: Any, jid: str) -> Deferral:
    from ..errors import JobNotFound

    h = broker.redis.hgetall(broker.keys.job(jid))
    if not h:
        raise JobNotFound(f"no job {jid!r} (unknown id, or its status record expired)")
    deferrals = _text(h, "deferrals", "0")
    return Deferral(jid, _text(h, "state", "unknown"),
                    int(deferrals) if deferrals.lstrip("-").isdigit() else 0,
                    _text(h, "deferred_reason"), _seconds(_text(h, "deferred_at")),
                    _seconds(_text(h, "admitted_at")), _seconds(_text(h, "scheduled_at")))


def read_breaker(broker: Any, name: str, events_shown: int = EVENTS_SHOWN) -> BreakerInfo:
    """A breaker's state and its last ``events_shown`` transitions (newest first)."""
    r, key = broker.redis, broker.keys.breaker(name)
    now = redis_now_ms(r)
    h = r.hgetall(key)
    window = r.hgetall(key + ":window")
    events = [e.decode().split(" ", 1) for e in r.lrange(key + ":events", 0, events_shown - 1)]
    state = _text(h, "state", "closed")
    until = int(_text(h, "open_until", "0") or 0)
    if state == "open" and now >= until:
        state = "half-open"
    calls = sum(int(v) for v in window.values())
    failed = sum(int(v) for f, v in window.items() if f.startswith(b"f"))
    opened = int(_text(h, "opened_at", "0") or 0)
    return BreakerInfo(name, state, int(_text(h, "failures", "0") or 0),
                       int(_text(h, "opened", "0") or 0), opened / 1000 if opened else None,
                       until / 1000 if until else None,
                       max(0.0, (until - now) / 1000) if state == "open" else 0.0,
                       int(r.zcard(key + ":probes")), calls, failed,
                       [(int(ts) / 1000, st) for ts, st in events])


def read_rate(broker: Any, limit: Any, key: str, redis_key: str) -> RateUsage:
    r = broker.redis
    now = redis_now_ms(r)
    period_ms = max(1, round(limit.period_s * 1000))
    if limit.algorithm == "window":
        entries = r.zrangebyscore(redis_key, now - period_ms, "+inf", withscores=True)
        used = len(entries)
        wait = 0.0
        if used >= limit.limit:
            wait = (entries[used - limit.limit][1] + period_ms + 1 - now) / 1000
        return RateUsage(key, "window", limit.limit, limit.period_s, used, max(0.0, wait))
    burst = limit.burst or limit.limit
    tokens_raw, ts_raw = r.hmget(redis_key, "tokens", "ts")
    tokens = float(tokens_raw) if tokens_raw is not None else burst
    elapsed = max(0, now - int(ts_raw)) if ts_raw is not None else 0
    tokens = min(burst, tokens + elapsed * limit.limit / period_ms)
    wait = 0.0 if tokens >= 1 else (1 - tokens) * period_ms / limit.limit / 1000
    return RateUsage(key, "bucket", limit.limit, limit.period_s, round(burst - tokens, 3), wait)


def read_concurrency(broker: Any, limit: int, key: str, redis_key: str) -> ConcurrencyUsage:
    """Live holders only: a holder whose worker lost its lease counts as free, as in Lua."""
    r = broker.redis
    now = redis_now_ms(r)
    live = []
    for member, score in r.zrange(redis_key, 0, -1, withscores=True):
        holder = member.decode()
        owner = holder.rpartition("|")[0]
        lease = r.zscore(broker.keys.leases, owner)
        if score > now or (lease is not None and lease > now):
            live.append(holder)
    return ConcurrencyUsage(key, limit, len(live), live)


def read_workflow(broker: Any, wfid: str) -> WorkflowInfo:
    from ..errors import JobNotFound

    h = broker.redis.hgetall(broker.keys.workflow(wfid))
    if not h:
        raise JobNotFound(f"no workflow {wfid!r} (unknown id, or its record expired)")
    ids = sorted({f.decode().split(".")[0] for f in h if b"." in f}, key=int)
    nodes = []
    for nid in ids:
        parent = _text(h, f"{nid}.p") or None
        nodes.append(WorkflowNode(nid, _text(h, f"{nid}.k"), parent, _text(h, f"{nid}.s"),
                                  _text(h, f"{nid}.jid"), _text(h, f"{nid}.cls"),
                                  _json(_text(h, f"{nid}.o"))))
    created, finished = _text(h, "created_at"), _text(h, "finished_at")
    return WorkflowInfo(wfid, _text(h, "state"), float(created) if created else None,
                        float(finished) if finished else None, _json(_text(h, "result")),
                        _json(_text(h, "outcome")), nodes)
