"""Scenario 3, orphan recovery time after SIGKILL, per executor.

Two workers. Each round submits a job lasting ``job_s``, SIGKILLs the worker that started it (at
a random point of its heartbeat cycle), measures on the ledger clock how long until the other
worker starts the job, then starts a replacement so the next round has a survivor again. A new
job each round: one job lost four times would be buried as a poison pill (``max_recoveries``).
With the process and fork executors the round also checks that the killed worker's executor
children died with it (an orphaned child would keep running the job next to its recovered copy).
"""

from __future__ import annotations

import random
import time
from typing import Any

import psutil

from conveyor.job import new_jid

from ..procs import WorkerProc, wait_until
from ..results import percentile
from ..rig import Rig, job


def _leases(rig: Rig) -> int:
    return int(rig.r.zcard("conveyor:leases"))


def _runner(rig: Rig, uid: str, after: float) -> str | None:
    starts = [e for e in rig.ledger.events(frozenset({"start"})) if e.uid == uid and e.ts > after]
    return starts[-1].label if starts else None


def run(rig: Rig, *, job_type: str, rounds: int, beat_s: float, timeout_s: float,
        job_s: float, concurrency: int = 2, seed: int = 3) -> dict[str, Any]:
    """Each round adds a job of ``job_s`` that outlives the round, so over many rounds give the
    workers enough slots (``concurrency``) that the measured job never waits for a free slot on
    the survivor (with 2 slots and 10 rounds, 17-38 s "recoveries" were such waits)."""
    rng = random.Random(seed)
    workers: dict[str, WorkerProc] = {}
    serial = 0

    def spawn() -> None:
        nonlocal serial
        serial += 1
        w = rig.worker(f"{job_type}-{serial}", concurrency=concurrency)
        workers[w.label] = w

    spawn()
    spawn()
    wait_until(lambda: _leases(rig) == 2, 30, "two registered workers")
    delays: list[float] = []
    orphans = 0
    for _ in range(rounds):
        uid = new_jid()
        since = rig.ledger.now()
        rig.submit([job(job_type, uid, int(job_s * 1000))])
        wait_until(lambda u=uid, t=since: _runner(rig, u, t), timeout_s, f"{uid} to start")
        victim = workers[_runner(rig, uid, since) or ""]
        time.sleep(rng.uniform(0, beat_s))
        children = victim.children()
        since = rig.ledger.record("kill", uid, victim.label, victim.pid)
        victim.kill()
        wait_until(lambda u=uid, t=since: _runner(rig, u, t), timeout_s,
                   f"{uid} to be recovered")
        starts = [e for e in rig.ledger.events(frozenset({"start"})) if e.uid == uid]
        delays.append(starts[-1].ts - since)
        orphans += sum(1 for c in children if _alive(c))
        spawn()
        wait_until(lambda: _leases(rig) == 2, 30, "the replacement to register")
    for w in workers.values():
        w.begin_close()
    for w in workers.values():
        w.close()
    return {"scenario": "recovery_time", "job_type": job_type, "rounds": rounds,
            "recovery_s_p50": percentile(delays, 50), "recovery_s_p99": percentile(delays, 99),
            "recovery_s_min": round(min(delays), 3), "recovery_s_max": round(max(delays), 3),
            "orphaned_children": orphans}


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
