"""Scenario 13, scheduled jobs across scheduler crashes and a Redis outage: every slot fires once.

Every worker runs the scheduler duty, so ``schedulers`` worker processes are the schedulers.
``one_offs`` jobs are scheduled at random instants over ``span_s``; every ``kill_every_s`` a
random scheduler gets SIGKILL and is replaced; in the middle of the span the proxy cuts Redis
off (blackhole) for ``outage_s``. Then every job must have started exactly once (none missed,
none fired twice; a rerun because the worker that ran it was killed before its ack reached
Redis is at-least-once delivery and counted apart), and the lateness of each start against its
due time is reported (jobs due during the outage are late by up to the outage, by design).

Periodic (cron) jobs are not covered yet: the cron duty (``conveyor.flow``) was still being
built when this scenario was written.
"""

from __future__ import annotations

import random
import time
from typing import Any

from conveyor.job import new_jid

from ..ledger import runs
from ..results import drain, percentile
from ..rig import Rig, job


def run(rig: Rig, *, schedulers: int, one_offs: int, span_s: float, kill_every_s: float,
        outage_s: float, seed: int = 13, lead_s: float = 2.0) -> dict[str, Any]:
    assert rig.proxy is not None, "schedule.run() needs a rig with proxy=True"
    rng = random.Random(seed)
    t0 = time.time() + lead_s
    due = {new_jid(): t0 + rng.uniform(0, span_s) for _ in range(one_offs)}
    rig.submit([job("work", uid, 0, at=when) for uid, when in due.items()])
    fleet = rig.fleet(schedulers, concurrency=2)
    outage_at = t0 + span_s / 2
    kills = 0
    kills_at: list[tuple[str, float]] = []
    cut_done = False
    next_kill = time.monotonic() + kill_every_s
    while time.time() < t0 + span_s:
        time.sleep(0.05)
        if not cut_done and time.time() >= outage_at:
            rig.proxy.blackhole()
            time.sleep(outage_s)  # the outage itself
            rig.proxy.heal()
            cut_done = True
        if time.monotonic() >= next_kill:
            next_kill += kill_every_s
            victim = rng.choice([w for w in fleet.slots if w.alive])
            kills_at.append((victim.label, rig.ledger.record("kill", "-", victim.label,
                                                             victim.pid)))
            victim.kill()
            kills += 1
            fleet.restart_dead()
    drain(rig.r, 60 + outage_s)
    events = rig.ledger.events()
    starts = runs(events, "start")
    first = {}
    for e in events:
        if e.kind == "start" and e.uid not in first:
            first[e.uid] = e.ts
    doubled = [u for u in due if starts[u] >= 2]
    rerun_after_kill = [u for u in doubled if _killed_after_start(events, u, kills_at)]
    late = [first[u] - due[u] for u in due if u in first]
    in_outage = [first[u] - due[u] for u in due
                 if u in first and outage_at <= due[u] < outage_at + outage_s]
    return {"scenario": "scheduled_jobs", "schedulers": schedulers, "one_offs": one_offs,
            "span_s": span_s, "kills": kills, "outage_s": outage_s,
            "missed": sum(1 for u in due if starts[u] == 0),
            "exactly_once": sum(1 for u in due if starts[u] == 1),
            "doubled": len(doubled) - len(rerun_after_kill),
            "rerun_after_worker_kill": len(rerun_after_kill),
            "early": sum(1 for x in late if x < -0.05),
            "lateness_s_p50": percentile(late, 50), "lateness_s_p99": percentile(late, 99),
            "lateness_s_max": round(max(late), 3) if late else None,
            "due_in_outage": len(in_outage),
            "lateness_in_outage_s_max": round(max(in_outage), 3) if in_outage else None}


def _killed_after_start(events: list[Any], uid: str, kills: list[tuple[str, float]]) -> bool:
    """Its first run was on a worker killed afterwards: a rerun of at-least-once delivery (the
    ack had not reached Redis), not a second firing of the schedule."""
    first = next(e for e in events if e.kind == "start" and e.uid == uid)
    return any(label == first.label and ts >= first.ts for label, ts in kills)
