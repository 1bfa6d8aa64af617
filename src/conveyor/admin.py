"""The one read/admin facade: the CLI, API, dashboard, HUD and metrics go through it.

Nothing outside this module and the broker issues Redis commands for admin views. Every method
returns dataclasses that callers serialise as they are (``dataclasses.asdict``). Listings are
paged and bounded (``MAX_PAGE``), and entries of the sorted sets are addressed by job id; moves
use the exact raw member read from Redis, so entries written by Sidekiq stay byte-identical.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from . import latency
from .broker import SyncBroker
from .client import JobStatus
from .errors import BrokerError, JobNotFound
from .flow.admin import FlowAdmin
from .job import loads

MAX_PAGE = 500
SCAN_COUNT = 500
HISTORY_DAYS_MAX = 90
SETS = ("schedule", "retry", "dead")


@dataclass(frozen=True)
class QueueInfo:
    name: str
    size: int
    latency_s: float
    paused: bool


@dataclass(frozen=True)
class SetEntry:
    """A job in ``schedule``, ``retry`` or ``dead``."""

    set: str
    score: float
    jid: str
    name: str
    queue: str
    args: list[Any]
    retry_count: int | None = None
    error_class: str = ""
    error_message: str = ""
    raw: str = field(default="", repr=False)


@dataclass(frozen=True)
class QueuedJob:
    queue: str
    jid: str
    name: str
    args: list[Any]
    enqueued_at: float | None
    raw: str = field(default="", repr=False)


@dataclass(frozen=True)
class ProcessInfo:
    identity: str
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int
    busy: int
    beat: float
    quiet: bool
    rss_kb: int
    started_at: float
    labels: list[str]
    jobs: list[dict[str, Any]]
    executors: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict, repr=False)  # conveyor.latency wire


@dataclass(frozen=True)
class RecentRuns:
    """Runs finished by the live workers in their recent window (``conveyor.latency``).

    Percentiles are in seconds and None when no run was counted; they are read from log-spaced
    buckets, so they are within about 12 % of the exact figure. ``run_*`` is the run time of
    finished runs (any outcome); ``wait_*`` the time from ``enqueued_at`` to the start.
    ``reporting`` counts the workers that published a summary (older workers do not).
    """

    window_s: float
    reporting: int
    runs: int
    outcomes: dict[str, int]
    dead_lettered: dict[str, int]
    run_p50_s: float | None
    run_p95_s: float | None
    run_p99_s: float | None
    wait_p50_s: float | None
    wait_p95_s: float | None
    wait_p99_s: float | None


@dataclass(frozen=True)
class Stats:
    processed: int
    failed: int
    enqueued: int
    scheduled: int
    retries: int
    dead: int
    processes: int
    busy: int
    queues: int


@dataclass(frozen=True)
class Health:
    ok: bool
    redis_version: str = ""
    rtt_ms: float = 0.0
    aof_enabled: bool = False
    maxmemory_policy: str = ""
    used_memory_bytes: int = 0
    warnings: list[str] = field(default_factory=list)
    error: str = ""


@dataclass(frozen=True)
class Memory:
    """How full Redis is: ``used_bytes`` of ``max_bytes`` (0: no ``maxmemory`` limit)."""

    used_bytes: int
    max_bytes: int

    @property
    def fraction(self) -> float:
        return self.used_bytes / self.max_bytes if self.max_bytes else 0.0


def _entry(set_name: str, raw: bytes, score: float) -> SetEntry:
    text = raw.decode("utf-8", "replace")
    try:
        job = loads(raw)
    except ValueError:
        job = None
    if not isinstance(job, dict):
        return SetEntry(set_name, score, "", "(malformed)", "", [text[:200]], raw=text)
    return SetEntry(set_name, score, str(job.get("jid", "")), str(job.get("class", "")),
                    str(job.get("queue", "")), list(job.get("args") or []),
                    job.get("retry_count"), str(job.get("error_class", "")),
                    str(job.get("error_message", "")), raw=text)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class Inspector:
    """Reads and administers one Redis (namespace included) through a :class:`SyncBroker`."""

    def __init__(self, broker: SyncBroker) -> None:
        self.broker = broker
        self.r: Any = broker.redis
        self.k = broker.keys

    @property
    def flow(self) -> FlowAdmin:
        """Rate and concurrency limits, circuit breakers, cron entries, workflows and unique
        locks: reads and changes (``conveyor.flow.admin``)."""
        return FlowAdmin(self.broker)

    # --- queues ---------------------------------------------------------------------------------
    def queue_names(self) -> list[str]:
        return sorted(n.decode() for n in self.r.smembers(self.k.queues))

    def queues(self) -> list[QueueInfo]:
        names = self.queue_names()
        pipe = self.r.pipeline(transaction=False)
        for n in names:
            pipe.llen(self.k.queue(n))
            pipe.lindex(self.k.queue(n), -1)
        pipe.smembers(self.k.paused)
        replies = pipe.execute()
        paused = {p.decode() for p in replies[-1]}
        now = time.time()
        out = []
        for i, n in enumerate(names):
            size, oldest = replies[2 * i], replies[2 * i + 1]
            latency = 0.0
            if oldest:
                try:
                    enq = loads(oldest).get("enqueued_at")
                    latency = max(0.0, now - _seconds(enq)) if enq else 0.0
                except (ValueError, AttributeError):
                    latency = 0.0
            out.append(QueueInfo(n, int(size), round(latency, 3), n in paused))
        return out

    def queue_jobs(self, queue: str, offset: int = 0, limit: int = 50) -> list[QueuedJob]:
        """Jobs of a queue, oldest (next to run) first."""
        limit = min(limit, MAX_PAGE)
        raws = self.r.lrange(self.k.queue(queue), -(offset + limit), -(offset + 1))
        out = []
        for raw in reversed(raws):
            try:
                job = loads(raw)
            except ValueError:
                job = None
            if isinstance(job, dict):
                out.append(QueuedJob(queue, str(job.get("jid", "")), str(job.get("class", "")),
                                     list(job.get("args") or []), job.get("enqueued_at"),
                                     raw.decode("utf-8", "replace")))
            else:
                out.append(QueuedJob(queue, "", "(malformed)", [], None,
                                     raw.decode("utf-8", "replace")))
        return out

    def pause(self, queue: str) -> None:
        self.r.sadd(self.k.paused, queue)

    def resume(self, queue: str) -> None:
        self.r.srem(self.k.paused, queue)

    def purge(self, queue: str) -> int:
        """Delete every job waiting in ``queue``; returns how many there were."""
        pipe = self.r.pipeline(transaction=True)
        pipe.llen(self.k.queue(queue))
        pipe.delete(self.k.queue(queue))
        size, _ = pipe.execute()
        return int(size)

    # --- sorted sets ------------------------------------------------------------------------------
    def _set_key(self, set_name: str) -> str:
        if set_name not in SETS:
            raise ValueError(f"unknown set {set_name!r}; one of: {', '.join(SETS)}")
        return str(getattr(self.k, set_name))

    def entries(self, set_name: str, offset: int = 0, limit: int = 50,
                name: str | None = None, queue: str | None = None) -> list[SetEntry]:
        """Entries of a set, soonest/oldest first, optionally filtered by type and queue."""
        key = self._set_key(set_name)
        limit = min(limit, MAX_PAGE)
        if set_name == "dead":
            raws = self.r.zrevrange(key, 0, -1 if (name or queue) else offset + limit - 1,
                                    withscores=True)
        else:
            raws = self.r.zrange(key, 0, -1 if (name or queue) else offset + limit - 1,
                                 withscores=True)
        found = [_entry(set_name, raw, score) for raw, score in raws]
        if name:
            found = [e for e in found if e.name == name]
        if queue:
            found = [e for e in found if e.queue == queue]
        return found[offset: offset + limit]

    def set_size(self, set_name: str) -> int:
        return int(self.r.zcard(self._set_key(set_name)))

    def find(self, set_name: str, jid: str) -> list[bytes]:
        """Raw members of a set that carry this job id (``ZSCAN MATCH *jid*`` as Sidekiq does,
        then checked after parsing, so JSON written with spaces is found too)."""
        key = self._set_key(set_name)
        found = []
        for raw, _ in self.r.zscan_iter(key, match=f"*{_glob_escape(jid)}*", count=SCAN_COUNT):
            try:
                job = loads(raw)
            except ValueError:
                continue
            if isinstance(job, dict) and job.get("jid") == jid:
                found.append(raw)
        return found

    def requeue(self, set_name: str, jids: list[str] | None = None) -> int:
        """Move entries (all of them when ``jids`` is None) to their queues now."""
        key = self._set_key(set_name)
        moved = 0
        if jids is None:
            while True:
                raws = self.r.zrange(key, 0, MAX_PAGE - 1)
                if not raws:
                    return moved
                moved += self.broker.requeue(key, raws)
        for jid in jids:
            moved += self.broker.requeue(key, self.find(set_name, jid))
        return moved

    def delete(self, set_name: str, jids: list[str] | None = None) -> int:
        """Delete entries (all when ``jids`` is None)."""
        key = self._set_key(set_name)
        if jids is None:
            pipe = self.r.pipeline(transaction=True)
            pipe.zcard(key)
            pipe.delete(key)
            return int(pipe.execute()[0])
        removed = 0
        for jid in jids:
            raws = self.find(set_name, jid)
            if raws:
                removed += int(self.r.zrem(key, *raws))
        return removed

    # --- jobs -------------------------------------------------------------------------------------
    def job(self, jid: str) -> JobStatus:
        rec = self.broker.status(jid)
        if not rec:
            raise JobNotFound(f"no job {jid!r} (unknown id, or its status record expired)")
        return JobStatus.from_record(jid, rec)

    def cancel(self, jid: str) -> str:
        prev = self.broker.cancel(jid)
        if not prev:
            raise JobNotFound(f"no job {jid!r} (unknown id, or its status record expired)")
        return prev

    def retry_now(self, jid: str) -> int:
        """Move the job from retry, dead or schedule into its queue now."""
        for set_name in ("retry", "dead", "schedule"):
            raws = self.find(set_name, jid)
            if raws:
                return self.broker.requeue(self._set_key(set_name), raws)
        raise JobNotFound(f"job {jid!r} is not in the retry, dead or scheduled set")

    # --- processes and stats --------------------------------------------------------------------
    def processes(self) -> list[ProcessInfo]:
        ids = sorted(i.decode() for i in self.r.smembers(self.k.processes))
        out = []
        for ident in ids:
            h = self.r.hgetall(self.k.process(ident))
            if b"info" not in h:
                continue
            info = loads(h[b"info"])
            work = self.r.hgetall(self.k.process_work(ident)[1])
            jobs = []
            for tid, val in work.items():
                entry = loads(val)
                payload = entry.get("payload")
                if isinstance(payload, str):
                    with contextlib.suppress(ValueError):
                        entry["payload"] = loads(payload)
                entry["tid"] = tid.decode()
                jobs.append(entry)
            out.append(ProcessInfo(ident, str(info.get("hostname", "")), int(info.get("pid", 0)),
                                   list(info.get("queues", [])), int(info.get("concurrency", 0)),
                                   int(h.get(b"busy", b"0")), float(h.get(b"beat", b"0")),
                                   h.get(b"quiet") == b"true", int(h.get(b"rss", b"0") or 0),
                                   _seconds(info.get("started_at", 0)),
                                   list(info.get("labels", [])), jobs,
                                   list(info.get("executors", [])), _summary(h)))
        return out

    def recent_runs(self, processes: list[ProcessInfo] | None = None) -> RecentRuns:
        """Run-time and wait percentiles of the jobs the live workers finished recently,
        merged from the summaries they publish with each heartbeat (pass ``processes`` when
        already read, to save the round trips)."""
        procs = self.processes() if processes is None else processes
        merged = latency.merge(p.summary for p in procs)
        run, wait = merged["run"], merged["wait"]
        q = latency.quantile
        return RecentRuns(merged["window_s"], merged["reporting"], sum(run.values()),
                          merged["outcomes"], merged["dead_lettered"], q(run, 0.5),
                          q(run, 0.95), q(run, 0.99), q(wait, 0.5), q(wait, 0.95),
                          q(wait, 0.99))

    def stats(self) -> Stats:
        names = self.queue_names()
        pipe = self.r.pipeline(transaction=False)
        pipe.get(self.k.stat("processed"))
        pipe.get(self.k.stat("failed"))
        pipe.zcard(self.k.schedule)
        pipe.zcard(self.k.retry)
        pipe.zcard(self.k.dead)
        for n in names:
            pipe.llen(self.k.queue(n))
        r = pipe.execute()
        procs = self.processes()
        return Stats(int(r[0] or 0), int(r[1] or 0), sum(int(x) for x in r[5:]), int(r[2]),
                     int(r[3]), int(r[4]), len(procs), sum(p.busy for p in procs), len(names))

    def history(self, days: int = 7) -> list[dict[str, Any]]:
        """Processed and failed per UTC day, newest last."""
        days = max(1, min(days, HISTORY_DAYS_MAX))
        today = datetime.now(UTC).date()
        dates = [(today - timedelta(days=i)).isoformat() for i in reversed(range(days))]
        pipe = self.r.pipeline(transaction=False)
        for d in dates:
            pipe.get(self.k.stat("processed", d))
            pipe.get(self.k.stat("failed", d))
        r = pipe.execute()
        return [{"date": d, "processed": int(r[2 * i] or 0), "failed": int(r[2 * i + 1] or 0)}
                for i, d in enumerate(dates)]

    def memory(self) -> Memory:
        """Redis's memory use against its ``maxmemory`` (from ``INFO memory``)."""
        info = self.r.info("memory")
        return Memory(int(info.get("used_memory", 0)), int(info.get("maxmemory", 0)))

    def health(self) -> Health:
        try:
            started = time.perf_counter()
            self.r.ping()
            rtt = (time.perf_counter() - started) * 1000
            info = self.r.info()
            policy = str(self.r.config_get("maxmemory-policy").get("maxmemory-policy", ""))
        except (redis.RedisError, BrokerError, OSError) as exc:
            return Health(ok=False, error=f"{type(exc).__name__}: {exc}")
        warnings = []
        aof = bool(info.get("aof_enabled"))
        if not aof:
            warnings.append("AOF is off: a Redis restart loses jobs enqueued since the last save")
        if policy not in ("noeviction", ""):
            warnings.append(f"maxmemory-policy is {policy}: Redis may evict jobs; use noeviction")
        return Health(True, str(info.get("redis_version", "")), round(rtt, 3), aof, policy,
                      int(info.get("used_memory", 0)), warnings)


def _summary(process_hash: dict[bytes, bytes]) -> dict[str, Any]:
    """The ``summary`` field of a process hash; {} when absent (Sidekiq, older workers) or
    malformed."""
    raw = process_hash.get(b"summary")
    if not raw:
        return {}
    try:
        value = loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _seconds(value: Any) -> float:
    """Sidekiq timestamps: float seconds (6.x/7.x) or integer milliseconds (8.x)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value / 1000.0
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
