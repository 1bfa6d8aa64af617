"""Scenario 7, a poison pill that kills its executor, among normal jobs.

``crash`` (thread executor) kills the whole worker process, which the fleet restarts; the lease
recovery counts each loss. ``crash_process`` / ``crash_fork`` kill only the executor's child,
which the worker reports as ``WorkerLost``. Either way the pill must end in the dead set with
"worker lost" after the configured number of losses (``max_recoveries``, 3 by default, so 4
runs), and the normal jobs must all finish. Retry delays of the child-crash path are pulled
forward by hand (the entry's score in ``retry`` is set to 0): the timers are driven by the test.
"""

from __future__ import annotations

import json
import time
from typing import Any

from conveyor.job import new_jid

from ..ledger import runs
from ..results import classify, dead_reasons, drain
from ..rig import Rig, job

POLL_S = 0.05


def run(rig: Rig, *, poison_type: str, normal_jobs: int = 200, workers: int = 2,
        concurrency: int = 4, max_runs: int = 8, timeout_s: float = 60.0) -> dict[str, Any]:
    pill = new_jid()
    normal = [job("work", new_jid(), 20) for _ in range(normal_jobs)]
    half = normal_jobs // 2
    rig.submit([*normal[:half], job(poison_type, pill), *normal[half:]])
    fleet = rig.fleet(workers, concurrency=concurrency)
    started = time.monotonic()
    restarts = 0
    while pill.encode() not in _dead_jids(rig):
        runs_so_far = runs(rig.ledger.events(frozenset({"start"})), "start")[pill]
        if runs_so_far > max_runs or time.monotonic() - started > timeout_s:
            break
        restarts += fleet.restart_dead()
        _make_retries_due(rig)
        time.sleep(POLL_S)
    poison_s = time.monotonic() - started
    restarts += fleet.restart_dead()
    left_in_retry = _remove_from_retry(rig, pill)  # else it would wait there for weeks
    drain(rig.r, timeout_s)
    events = rig.ledger.events()
    dead = dead_reasons(rig.r)
    entry = _dead_entry(rig, pill)
    verdict = classify(rig.history, events, {k: v for k, v in dead.items() if k == pill})
    return {"scenario": "poison_pill", "poison_type": poison_type,
            "poison_runs": runs(events, "start")[pill], "poison_dead": pill in dead,
            "poison_error_class": entry.get("error_class"),
            "poison_error_message": str(entry.get("error_message", ""))[:200],
            "poison_left_in_retry": left_in_retry, "seconds_to_dead": round(poison_s, 2),
            "worker_restarts": restarts,
            "normal_jobs": normal_jobs, "other_dead": len(dead) - (pill in dead), **verdict}


def _dead_jids(rig: Rig) -> set[bytes]:
    return {json.loads(raw).get("jid", "").encode() for raw in rig.r.zrange("dead", 0, -1)}


def _dead_entry(rig: Rig, jid: str) -> dict[str, Any]:
    for raw in rig.r.zrange("dead", 0, -1):
        entry = json.loads(raw)
        if entry.get("jid") == jid:
            return dict(entry)
    return {}


def _remove_from_retry(rig: Rig, jid: str) -> bool:
    for raw in rig.r.zrange("retry", 0, -1):
        if json.loads(raw).get("jid") == jid:
            return bool(rig.r.zrem("retry", raw))
    return False


def _make_retries_due(rig: Rig) -> int:
    """Set every retry entry's due time to the epoch, so the scheduler promotes it now."""
    entries = rig.r.zrange("retry", 0, -1)
    if entries:
        rig.r.zadd("retry", dict.fromkeys(entries, 0), xx=True)
    return len(entries)
