"""Scenario 1, SIGKILL churn: a random worker is killed every few seconds and restarted.

Jobs of 50-200 ms are submitted up front; ``workers`` processes run them; every ``kill_every_s``
a random live worker gets SIGKILL (the ledger records the moment) and a fresh one replaces it.
After ``duration_s`` the faults stop, Redis is drained and the run is classified. The fault
schedule is time-based on purpose (that is the experiment), everything else waits on conditions.
"""

from __future__ import annotations

import random
import time
from typing import Any

from conveyor.job import new_jid

from ..procs import wait_until
from ..results import classify, dead_reasons, drain, recovery_times
from ..rig import Rig, job


def run(rig: Rig, *, jobs: int, workers: int, concurrency: int, duration_s: float,
        kill_every_s: float, ms: tuple[int, int] = (50, 200), job_type: str = "work",
        seed: int = 1, drain_timeout_s: float = 120.0) -> dict[str, Any]:
    rng = random.Random(seed)
    rig.submit([job(job_type, new_jid(), rng.randint(*ms)) for _ in range(jobs)])
    fleet = rig.fleet(workers, concurrency=concurrency)
    wait_until(lambda: rig.ledger.count() > 0, 30, "the first job to start")
    kills: list[tuple[str, float]] = []
    started = time.monotonic()
    next_kill = started + kill_every_s
    while time.monotonic() < started + duration_s:
        time.sleep(max(0.0, next_kill - time.monotonic()))
        next_kill += kill_every_s
        victim = rng.choice([w for w in fleet.slots if w.alive])
        victim.kill()  # reaped before the kill is recorded: a job that finished (and was
        # acknowledged) between a kill's record and its signal read as running at the kill
        kills.append((victim.label, rig.ledger.record("kill", "-", victim.label, victim.pid)))
        fleet.restart_dead()
    drained_s = drain(rig.r, drain_timeout_s)
    events = rig.ledger.events()
    verdict = classify(rig.history, events, dead_reasons(rig.r))
    timing = recovery_times(events, kills)
    elapsed = time.monotonic() - started
    return {"scenario": "sigkill_churn", "jobs": jobs, "workers": workers,
            "concurrency": concurrency, "duration_s": duration_s, "kill_every_s": kill_every_s,
            "job_ms": list(ms), "job_type": job_type, "drain_after_faults_s": round(drained_s, 2),
            "throughput_jobs_s": round(verdict["finished"] / elapsed, 1),
            "duplicate_bound": len(kills) * concurrency, **verdict, **timing}
