"""Scenario 3, orphan recovery time after SIGKILL, per executor.

Two workers. Each round submits a job lasting ``job_s``, SIGKILLs the worker that started it (at
a random point of its heartbeat cycle), measures on the ledger clock how long until the other
worker starts the job, then starts a replacement so the next round has a survivor again. A new
job each round: one job lost four times would be buried as a poison pill (``max_recoveries``).
Every round also follows the killed worker's children (process and fork pools, the http
executor's supervised sidecar) by pid: an orphan is a child still alive when the job has been
recovered, so it may be running the old copy next to the new one. For each orphan the round waits
(up to ``orphan_wait_s``) until it is gone and reports how long it outlived its worker, and counts
the old copies that still finished after the kill (``orphan_finishes``, from the ledger: a
``finish`` under the killed worker's label). Orphans still alive after the wait are SIGKILLed by
pid and counted in ``orphans_killed_by_test``; so are children left behind by the final close.
"""

from __future__ import annotations

import contextlib
import functools
import random
import time
from typing import Any

import psutil

from conveyor.job import new_jid

from ..procs import POLL_S, WorkerProc, wait_until
from ..results import percentile
from ..rig import Rig, job

ORPHAN_MARGIN_S = 10.0


def _leases(rig: Rig) -> int:
    return int(rig.r.zcard("conveyor:leases"))


def _runner(rig: Rig, uid: str, after: float) -> str | None:
    starts = [e for e in rig.ledger.events(frozenset({"start"})) if e.uid == uid and e.ts > after]
    return starts[-1].label if starts else None


def run(rig: Rig, *, job_type: str, rounds: int, beat_s: float, timeout_s: float,
        job_s: float, concurrency: int = 2, seed: int = 3,
        orphan_wait_s: float | None = None) -> dict[str, Any]:
    """Each round adds a job of ``job_s`` that outlives the round, so over many rounds give the
    workers enough slots (``concurrency``) that the measured job never waits for a free slot on
    the survivor (with 2 slots and 10 rounds, 17-38 s "recoveries" were such waits).
    ``orphan_wait_s`` (default ``job_s`` + 10 s) bounds the wait for an orphan to go."""
    orphan_wait_s = job_s + ORPHAN_MARGIN_S if orphan_wait_s is None else orphan_wait_s
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
    orphans = orphan_finishes = killed_by_test = 0
    lifetimes: list[float] = []
    for _ in range(rounds):
        uid = new_jid()
        since = rig.ledger.now()
        rig.submit([job(job_type, uid, int(job_s * 1000))])
        wait_until(functools.partial(_runner, rig, uid, since), timeout_s, f"{uid} to start")
        victim = workers[_runner(rig, uid, since) or ""]
        time.sleep(rng.uniform(0, beat_s))
        children = victim.children()
        since = rig.ledger.record("kill", uid, victim.label, victim.pid)
        killed_at = time.monotonic()
        victim.kill()
        wait_until(functools.partial(_runner, rig, uid, since), timeout_s,
                   f"{uid} to be recovered")
        starts = [e for e in rig.ledger.events(frozenset({"start"})) if e.uid == uid]
        delays.append(starts[-1].ts - since)
        alive = [c for c in children if _alive(c)]
        orphans += len(alive)
        gone_after, leftover = _outlive(alive, killed_at, orphan_wait_s)
        lifetimes += gone_after
        killed_by_test += leftover
        orphan_finishes += sum(1 for e in rig.ledger.events(frozenset({"finish"}))
                               if e.uid == uid and e.label == victim.label and e.ts > since)
        spawn()
        wait_until(lambda: _leases(rig) == 2, 30, "the replacement to register")
    children = [c for w in workers.values() if w.alive for c in w.children()]
    for w in workers.values():
        w.begin_close()
    for w in workers.values():
        w.close()
    _, left_at_close = _outlive([c for c in children if _alive(c)], time.monotonic(),
                                ORPHAN_MARGIN_S)
    return {"scenario": "recovery_time", "job_type": job_type, "rounds": rounds,
            "recovery_s_p50": percentile(delays, 50), "recovery_s_p99": percentile(delays, 99),
            "recovery_s_min": round(min(delays), 3), "recovery_s_max": round(max(delays), 3),
            "orphaned_children": orphans, "orphan_finishes": orphan_finishes,
            "orphan_lifetime_s_max": round(max(lifetimes), 3) if lifetimes else None,
            "orphan_lifetime_s_p50": percentile(lifetimes, 50),
            "orphans_killed_by_test": killed_by_test, "children_left_at_close": left_at_close}


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _outlive(procs: list[psutil.Process], since: float, limit_s: float) -> tuple[list[float], int]:
    """Wait until each process is gone (exited or a zombie): the seconds each outlived
    ``since`` (monotonic), and how many were still alive after ``limit_s`` (SIGKILLed here, by
    their pid, so no test leaves a process behind)."""
    lived: list[float] = []
    waiting = list(procs)
    deadline = since + limit_s
    while waiting and time.monotonic() < deadline:
        for p in [p for p in waiting if not _alive(p)]:
            lived.append(time.monotonic() - since)
            waiting.remove(p)
        time.sleep(POLL_S)
    for p in waiting:
        with contextlib.suppress(psutil.Error):
            p.kill()
    return lived, len(waiting)
