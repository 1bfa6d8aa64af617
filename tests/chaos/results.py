"""Classifying a run Jepsen-style, draining Redis first, and writing the figures as JSON lines.

After the faults stop, :func:`drain` waits until no job is left anywhere in Redis (queues,
claim lists, in-flight records, schedule, retry, quarantine). :func:`classify` then compares the
submission history with the ledger:

* lost: acknowledged, never finished, and not in the dead set;
* duplicated: finished more than once (count, rate over finished jobs, max finishes of one job);
* reruns: started more than once (a rerun that crashed again does not finish twice);
* unexpected: finished but never submitted;
* recovered: submitted with an indeterminate answer, and finished anyway;
* dead: in the dead set, counted by the reason (``error_class``) written there.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis

from .ledger import Event, History, runs

DRAIN_POLL_S = 0.1


def pending_jobs(r: redis.Redis) -> int:
    """Jobs still held anywhere in Redis (everything but finished and dead)."""
    total = 0
    for key in r.scan_iter(match="queue:*"):
        total += int(r.llen(key))
    for key in r.scan_iter(match="conveyor:claim:*"):
        total += int(r.llen(key))
    for key in r.scan_iter(match="conveyor:inflight:*"):
        total += int(r.hlen(key))
    total += int(r.zcard("schedule")) + int(r.zcard("retry")) + int(r.llen("conveyor:quarantine"))
    total += int(r.zcard("conveyor:suspects"))
    return total


def drain(r: redis.Redis, timeout_s: float, settle_s: float = 0.5) -> float:
    """Wait until nothing is pending for ``settle_s`` in a row; return the seconds it took."""
    started = time.monotonic()
    empty_since: float | None = None
    while True:
        now = time.monotonic()
        try:
            pending = pending_jobs(r)
        except redis.ConnectionError:
            pending = -1
        if pending == 0:
            empty_since = empty_since or now
            if now - empty_since >= settle_s:
                return now - started
        else:
            empty_since = None
        if now - started > timeout_s:
            raise AssertionError(f"not drained after {timeout_s}s: {pending} job(s) pending")
        time.sleep(DRAIN_POLL_S)


def dead_reasons(r: redis.Redis) -> dict[str, str]:
    """jid -> error_class of every entry in the dead set."""
    out = {}
    for raw in r.zrange("dead", 0, -1):
        job = json.loads(raw)
        out[str(job.get("jid"))] = str(job.get("error_class"))
    return out


def classify(history: History, events: list[Event], dead: dict[str, str]) -> dict[str, Any]:
    finishes = runs(events, "finish")
    starts = runs(events, "start")
    acked = history.acknowledged
    dup = {uid: n for uid, n in finishes.items() if n > 1}
    lost = sorted(acked - set(finishes) - set(dead))
    return {
        "attempted": len(history.attempted),
        "acknowledged": len(acked),
        "failed_submissions": len(history.failed),
        "indeterminate": len(history.indeterminate),
        "finished": len(finishes),
        "lost": len(lost),
        "lost_ids": lost[:20],
        "duplicated": len(dup),
        "duplicate_rate": round(len(dup) / max(1, len(finishes)), 6),
        "duplicate_max": max(finishes.values(), default=0),
        "reruns": sum(n - 1 for n in starts.values() if n > 1),
        "unexpected": len(set(finishes) - history.attempted),
        "recovered": len(set(finishes) & history.indeterminate),
        "dead": dict(Counter(dead[u] for u in dead if u in history.attempted)),
    }


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return round(ordered[rank - 1], 3)


def machine() -> dict[str, Any]:
    return {"cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}


def write_result(record: dict[str, Any], path: str | Path | None = None) -> None:
    """Append one JSON line to ``path`` (or ``$CHAOS_RESULTS``; nothing when neither is set)."""
    target = path or os.environ.get("CHAOS_RESULTS")
    if not target:
        return
    line = {"ts": round(time.time(), 3), "machine": machine(), **record}
    with open(target, "a", encoding="utf-8") as f:
        f.write(json.dumps(line, sort_keys=True) + "\n")


def recovery_times(events: list[Event], kills: list[tuple[str, float]]) -> dict[str, Any]:
    """For each kill of worker ``label`` at ledger time ``ts``: the jobs it was running
    (started there, not finished there), the jobs it had finished without their ack reaching
    Redis (started again elsewhere afterwards), and how long each running job took to start
    again on another worker."""
    delays: list[float] = []
    running_total = unacked_total = never_restarted = 0
    by_uid: dict[str, list[Event]] = {}
    for e in events:
        if e.kind in ("start", "finish"):
            by_uid.setdefault(e.uid, []).append(e)
    for label, ts in kills:
        for evs in by_uid.values():
            here = [e for e in evs if e.label == label and e.ts <= ts]
            if not any(e.kind == "start" for e in here):
                continue
            later = [e.ts for e in evs if e.kind == "start" and e.ts > ts and e.label != label]
            if any(e.kind == "finish" for e in here):
                unacked_total += 1 if later else 0
                continue
            running_total += 1
            if later:
                delays.append(min(later) - ts)
            else:
                never_restarted += 1
    return {"kills": len(kills), "running_at_kills": running_total,
            "finished_unacked_at_kills": unacked_total, "never_restarted": never_restarted,
            "recovery_s_p50": percentile(delays, 50), "recovery_s_p99": percentile(delays, 99),
            "recovery_s_max": round(max(delays), 3) if delays else None}
