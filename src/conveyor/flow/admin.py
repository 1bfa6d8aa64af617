"""Flow control in the admin facade: ``Inspector(...).flow`` is a :class:`FlowAdmin`.

Reads and changes of limits, breakers, cron entries, workflows and unique locks, for the API,
the CLI and the dashboard. Limits set here are run-time overrides per job type (see
``policy.py``); workers apply them within ``POLICY_REFRESH_S``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..errors import ConfigurationError, JobNotFound
from ..job import dumps, loads
from .cron import CronEntry
from .gate import rate_key_suffix
from .keytemplate import KeyTemplate
from .policy import OPTION_NAMES, FlowPolicy, normalize_override
from .views import (
    EVENTS_SHOWN,
    BreakerInfo,
    CronInfo,
    Deferral,
    LimitInfo,
    PolicyInfo,
    UniqueLock,
    WorkflowInfo,
    WorkflowSummary,
    read_breaker,
    read_concurrency,
    read_deferral,
    read_rate,
    read_workflow,
    redis_now_ms,
)

FORCED_OPEN_S = 60.0
LIST_MAX = 500  # most workflows or unique locks one listing returns
SCAN_BATCH = 1000  # keys SCAN visits per step
SCAN_MAX_STEPS = 20  # a listing visits at most 20,000 keys (20 round trips)


def _concrete(template: str | None, job_type: str, key: str | None) -> str | None:
    """The limit's key when it is fixed (or a concrete ``key`` was asked for), else None."""
    if template is None:
        return job_type
    return template if KeyTemplate(template).is_static else key


class FlowAdmin:
    """Flow-control reads and changes over one :class:`~conveyor.broker.SyncBroker`."""

    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self.r: Any = broker.redis
        self.k = broker.keys

    # --- policies and limits ----------------------------------------------------------------
    def _stored(self, key: str) -> dict[str, dict[str, Any]]:
        return {n.decode(): loads(v) for n, v in self.r.hgetall(key).items()}

    def policies(self) -> list[PolicyInfo]:
        """Every job type with a declared (by a running app) or run-time flow policy."""
        declared, runtime = self._stored(self.k.flow_declared), self._stored(self.k.flow_policies)
        out = []
        for name in sorted(set(declared) | set(runtime)):
            policy = self._effective(declared.get(name), runtime.get(name))
            out.append(PolicyInfo(name, declared.get(name), runtime.get(name), policy.describe()))
        return out

    def _effective(self, declared: dict[str, Any] | None,
                   runtime: dict[str, Any] | None) -> FlowPolicy:
        base = FlowPolicy().override(declared) if declared else FlowPolicy()
        return base.override(runtime) if runtime else base

    def policy(self, job_type: str) -> PolicyInfo:
        """One job type's policy (empty when it has none, declared or run-time)."""
        found = [p for p in self.policies() if p.job_type == job_type]
        return found[0] if found else PolicyInfo(job_type, None, None, [])

    def set_policy(self, job_type: str, **changes: Any) -> PolicyInfo:
        """Override ``rate_limit``, ``concurrency_limit`` and/or ``breaker`` of a job type
        (``None`` removes that one); other fields keep their declared value."""
        update = normalize_override(changes)
        self._update_override(job_type, lambda stored: {**stored, **update})
        return self.policy(job_type)

    def clear_override(self, job_type: str, option: str) -> PolicyInfo:
        """Drop one field (``rate_limit``, ``concurrency_limit`` or ``breaker``) of a job
        type's run-time override: its declared value applies again."""
        if option not in OPTION_NAMES:
            raise ConfigurationError(f"unknown flow option {option!r}; known: "
                                     f"{', '.join(OPTION_NAMES)}")
        self._update_override(job_type, lambda stored: {k: v for k, v in stored.items()
                                                         if k != option})
        return self.policy(job_type)

    def _update_override(self, job_type: str,
                         change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Read, change and write one override atomically (WATCH: concurrent admins)."""
        def update(pipe: Any) -> None:
            raw = pipe.hget(self.k.flow_policies, job_type)
            stored = change(loads(raw) if raw else {})
            pipe.multi()
            if stored:
                pipe.hset(self.k.flow_policies, job_type, dumps(stored))
            else:
                pipe.hdel(self.k.flow_policies, job_type)

        self.r.transaction(update, self.k.flow_policies)

    def clear_policy(self, job_type: str) -> bool:
        """Drop the run-time override: the declared policy applies again."""
        return bool(self.r.hdel(self.k.flow_policies, job_type))

    def limits(self, job_type: str | None = None, key: str | None = None) -> list[LimitInfo]:
        """Every limit with its current use. Limits keyed by a template with fields show their
        use only for the concrete ``key`` given (for example ``tenant:42``)."""
        out: list[LimitInfo] = []
        for p in self.policies():
            if job_type is not None and p.job_type != job_type:
                continue
            policy = self._effective(p.declared, p.runtime)
            source = "runtime" if p.runtime else "declared"
            for rl in policy.rate_limits:
                logical = _concrete(rl.key, p.job_type, key)
                usage = None if logical is None else read_rate(
                    self.broker, rl, logical, self.k.rate(logical + rate_key_suffix(rl)))
                out.append(LimitInfo(p.job_type, "rate", rl.key or p.job_type, rl.describe(),
                                     source, usage))
            for cl in policy.concurrency_limits:
                logical = _concrete(cl.key, p.job_type, key)
                cusage = None if logical is None else read_concurrency(
                    self.broker, cl.limit, logical, self.k.concurrency(logical))
                out.append(LimitInfo(p.job_type, "concurrency", cl.key or p.job_type,
                                     cl.describe(), source, cusage))
        return out

    # --- breakers ---------------------------------------------------------------------------
    def breakers(self, events: int = EVENTS_SHOWN) -> list[BreakerInfo]:
        """Every breaker (of job types and of sidecars) with its last ``events`` transitions
        (up to ``EVENTS_KEPT`` are kept)."""
        names = {n.decode() for n in self.r.smembers(self.k.breakers)}
        for p in self.policies():
            policy = self._effective(p.declared, p.runtime)
            if policy.breaker is not None:
                names.add(policy.breaker.name or p.job_type)
        return [read_breaker(self.broker, n, events) for n in sorted(names)]

    def breaker(self, name: str) -> BreakerInfo:
        return read_breaker(self.broker, name)

    def reset_breaker(self, name: str) -> BreakerInfo:
        """Close a breaker by hand (clears its counts and probes)."""
        key = self.k.breaker(name)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(key, mapping={"state": "closed", "failures": 0, "open_until": 0})
        pipe.delete(key + ":window", key + ":probes")
        pipe.lpush(key + ":events", f"{redis_now_ms(self.r)} closed")
        pipe.execute()
        return self.breaker(name)

    def open_breaker(self, name: str, seconds: float = FORCED_OPEN_S) -> BreakerInfo:
        """Open a breaker by hand for ``seconds`` (then it half-opens as usual)."""
        now = redis_now_ms(self.r)
        key = self.k.breaker(name)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(key, mapping={"state": "open", "opened_at": now,
                                "open_until": now + round(seconds * 1000)})
        pipe.hincrby(key, "opened", 1)
        pipe.lpush(key + ":events", f"{now} open")
        pipe.sadd(self.k.breakers, name)
        pipe.execute()
        return self.breaker(name)

    # --- cron -------------------------------------------------------------------------------
    def cron_entries(self) -> list[CronInfo]:
        raw = self.r.hgetall(self.k.cron_entries)
        lasts = self.r.hgetall(self.k.cron_last)
        now = redis_now_ms(self.r)
        out = []
        for name in sorted(raw):
            entry = CronEntry.from_json(loads(raw[name]))
            last = int(lasts[name]) if name in lasts else None
            nxt = entry.next_slot(max(last or 0, now)) if entry.enabled else None
            out.append(CronInfo(entry.name, entry.job, entry.schedule, entry.tz, entry.queue,
                                entry.catch_up, entry.enabled, entry.source,
                                last / 1000 if last else None, nxt / 1000 if nxt else None,
                                entry.args, entry.kwargs))
        return out

    def add_cron(self, entry: CronEntry) -> CronInfo:
        """Add (or replace) a periodic job at run time."""
        entry = replace(entry, source="runtime")
        self.r.hset(self.k.cron_entries, entry.name, dumps(entry.to_json()))
        return next(c for c in self.cron_entries() if c.name == entry.name)

    def remove_cron(self, name: str) -> bool:
        """Remove an entry (one declared in code comes back when its app starts again)."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hdel(self.k.cron_entries, name)
        pipe.hdel(self.k.cron_last, name)
        return bool(pipe.execute()[0])

    def set_cron_enabled(self, name: str, enabled: bool) -> CronInfo:
        """Pause or resume an entry; a resumed entry starts with its next slot (no catch-up)."""
        raw = self.r.hget(self.k.cron_entries, name)
        if raw is None:
            raise ConfigurationError(f"no cron entry named {name!r}")
        entry = replace(CronEntry.from_json(loads(raw)), enabled=enabled)
        self.r.hset(self.k.cron_entries, name, dumps(entry.to_json()))
        if enabled:
            self.r.hset(self.k.cron_last, name, entry.latest_slot(redis_now_ms(self.r)))
        return next(c for c in self.cron_entries() if c.name == name)

    # --- workflows and unique locks ------------------------------------------------------
    def _scan(self, pattern: str) -> list[bytes]:
        """Keys matching ``pattern`` among the first ``SCAN_MAX_STEPS * SCAN_BATCH`` keys SCAN
        visits: a bounded, best-effort listing (no index of these keys exists), which never
        blocks Redis and costs at most ``SCAN_MAX_STEPS`` round trips however large the
        keyspace; on a big one it shows some of the matching keys, not necessarily all."""
        found: list[bytes] = []
        cursor = 0
        for _ in range(SCAN_MAX_STEPS):
            cursor, keys = self.r.scan(cursor, match=pattern, count=SCAN_BATCH)
            found += keys
            if not cursor:
                break
        return found

    def workflows(self, limit: int = 50) -> list[WorkflowSummary]:
        """The newest workflows still on record (they expire with their TTL), newest first."""
        prefix = self.k.workflow("")
        keys = self._scan(self.k.workflow("*"))
        pipe = self.r.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, "state", "created_at", "finished_at")
        out = []
        for key, (state, created, finished) in zip(keys, pipe.execute(), strict=True):
            if state is None:  # expired between SCAN and HMGET
                continue
            out.append(WorkflowSummary(key.decode()[len(prefix):], state.decode(),
                                       float(created) if created else None,
                                       float(finished) if finished else None))
        out.sort(key=lambda w: w.created_at or 0.0, reverse=True)
        return out[:max(0, min(limit, LIST_MAX))]

    def workflow(self, wfid: str) -> WorkflowInfo:
        return read_workflow(self.broker, wfid)

    def unique_locks(self, limit: int = 50) -> list[UniqueLock]:
        """Unique locks held now, by key (at most ``limit``)."""
        prefix = self.k.unique("")
        keys = sorted(self._scan(self.k.unique("*")))
        pipe = self.r.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
            pipe.pttl(key)
        replies = pipe.execute()
        out = []
        for i, key in enumerate(keys):
            jid, ttl_ms = replies[2 * i], replies[2 * i + 1]
            if jid is not None:
                out.append(UniqueLock(key.decode()[len(prefix):], jid.decode(),
                                      max(0, ttl_ms) / 1000))
        return out[:max(0, min(limit, LIST_MAX))]

    def deferral(self, jid: str) -> Deferral:
        """How flow control held a job back: deferrals, the last reason, admission time."""
        return read_deferral(self.broker, jid)

    def unique_lock(self, key: str) -> UniqueLock:
        full = self.k.unique(key)
        pipe = self.r.pipeline(transaction=False)
        pipe.get(full)
        pipe.pttl(full)
        jid, ttl_ms = pipe.execute()
        if jid is None:
            raise JobNotFound(f"no unique lock {key!r} is held")
        return UniqueLock(key, jid.decode(), max(0, ttl_ms) / 1000)

    def release_unique(self, key: str) -> bool:
        """Drop a unique lock by hand (the job keeps running; a duplicate may be enqueued)."""
        return bool(self.r.delete(self.k.unique(key)))
