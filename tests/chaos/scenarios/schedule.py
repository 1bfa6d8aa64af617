"""Scenario 13, scheduled and periodic jobs across scheduler crashes and a Redis outage: every slot
fires once.

Every worker runs the scheduler duty and the cron duty, so ``schedulers`` worker processes are the
schedulers. ``one_offs`` jobs are scheduled at random instants over ``span_s``; with ``every_s``
a periodic entry is also added at run time through the admin facade (``FlowAdmin.add_cron``, an
interval aligned to the epoch, ``catch_up`` and ``cron_grace_s`` as given). Every
``kill_every_s`` a random scheduler gets SIGKILL and is replaced; in the middle of the span the
proxy cuts Redis off (blackhole) for ``outage_s``.

One-off jobs (submitted once the schedulers run): every job must have started exactly once (none
missed, none fired twice; a rerun because the worker that ran it was killed before its ack
reached Redis is at-least-once delivery and counted apart), and the lateness of each start
against its due time is reported (jobs due during the outage are late by up to the outage, by
design).

Periodic jobs: the job records its slot (the ``cron_slot`` that ``cron_fire.lua`` writes into the
payload) and its jid (one jid per firing); the Redis time it was fired at is the ``created_at``
of its status record (``enqueued_at`` in the payload is stamped again when a job is requeued). The
window is every slot after the one the first scheduler initialised the entry with, up to the last
slot due when the span ends (the scenario waits for that one, then removes the entry): each must
have fired exactly once (``cron_missed``, ``cron_doubled``: a slot with two jids). With a grace
shorter than the outage, the slots due during the outage are past their grace when Redis comes
back, so only the catch-up policy fires them: ``cron_fired_past_grace`` counts those firings.
Lateness is reported twice: fired (Redis time of the enqueue) and started (ledger), each minus
the slot.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from typing import Any

from conveyor.admin import Inspector
from conveyor.flow import CronEntry
from conveyor.flow.cron import CRON_GRACE_S
from conveyor.job import new_jid

from ..chaos_app import parse_cron_uid
from ..ledger import Event, runs
from ..procs import wait_until
from ..results import drain, percentile
from ..rig import Rig, job

CRON_ENTRY = "chaos-every"
CRON_JOB_MS = 50
CRON_LAST_KEY = "conveyor:cron:last"
STATUS_PREFIX = "conveyor:job:"
CRON_INIT_TIMEOUT_S = 60.0
EARLY_TOLERANCE_S = 0.05


def run(rig: Rig, *, schedulers: int, one_offs: int, span_s: float, kill_every_s: float,
        outage_s: float, seed: int = 13, lead_s: float = 2.0, every_s: float | None = None,
        catch_up: str = "all", cron_grace_s: float = CRON_GRACE_S) -> dict[str, Any]:
    assert rig.proxy is not None, "schedule.run() needs a rig with proxy=True"
    rng = random.Random(seed)
    if every_s is not None:
        Inspector(rig.app.client.sync).flow.add_cron(CronEntry(
            CRON_ENTRY, "cron_tick", every_s=every_s, args=[CRON_ENTRY, CRON_JOB_MS],
            catch_up=catch_up, grace_s=cron_grace_s))
    fleet = rig.fleet(schedulers, concurrency=2)
    init_slot_ms = _init_slot(rig) if every_s is not None else 0
    t0 = time.time() + lead_s
    due = {new_jid(): t0 + rng.uniform(0, span_s) for _ in range(one_offs)}
    rig.submit([job("work", uid, 0, at=when) for uid, when in due.items()])
    outage_at = t0 + span_s / 2
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
            rig.ledger.record("kill", "-", victim.label, victim.pid)
            victim.kill()
            # stamped once the victim is reaped: a job it started between the "kill" event and
            # the signal also ran before the kill (a CI run counted such a job, recovered from
            # the victim by lease, as a schedule firing twice)
            kills_at.append((victim.label, rig.ledger.now()))
            fleet.restart_dead()
    end_slot_ms = _stop_cron(rig, every_s, t0 + span_s, outage_s) if every_s is not None else 0
    drain(rig.r, 60 + outage_s)
    events = rig.ledger.events()
    result = {"scenario": "scheduled_jobs", "schedulers": schedulers, "one_offs": one_offs,
              "span_s": span_s, "kills": len(kills_at), "outage_s": outage_s,
              **_one_offs(events, due, kills_at, outage_at, outage_s)}
    if every_s is not None:
        result |= _periodic(rig, events, kills_at, init_slot_ms, end_slot_ms, every_s,
                            cron_grace_s, outage_at, outage_s) | {"cron_catch_up": catch_up}
    return result


def _init_slot(rig: Rig) -> int:
    """The slot the first scheduler remembers the new entry with (it is not fired: an entry
    starts with the slot after it). Read as soon as it appears, before a second slot comes."""
    wait_until(lambda: rig.r.hexists(CRON_LAST_KEY, CRON_ENTRY), CRON_INIT_TIMEOUT_S,
               "a scheduler to take up the cron entry", poll_s=0.01)
    return int(rig.r.hget(CRON_LAST_KEY, CRON_ENTRY) or 0)


def _stop_cron(rig: Rig, every_s: float, end: float, outage_s: float) -> int:
    """Wait until the last slot due by ``end`` has fired, then remove the entry; that slot."""
    step_ms = round(every_s * 1000)
    end_ms = int(end * 1000)
    end_slot = end_ms - end_ms % step_ms
    wait_until(lambda: int(rig.r.hget(CRON_LAST_KEY, CRON_ENTRY) or 0) >= end_slot,
               30 + outage_s, f"the cron slot {end_slot} to fire")
    Inspector(rig.app.client.sync).flow.remove_cron(CRON_ENTRY)
    return end_slot


def _one_offs(events: list[Event], due: dict[str, float], kills_at: list[tuple[str, float]],
              outage_at: float, outage_s: float) -> dict[str, Any]:
    starts = runs(events, "start")
    first: dict[str, float] = {}
    for e in events:
        if e.kind == "start" and e.uid not in first:
            first[e.uid] = e.ts
    doubled = [u for u in due if starts[u] >= 2]
    rerun_after_kill = [u for u in doubled if _killed_after_start(events, u, kills_at)]
    late = [first[u] - due[u] for u in due if u in first]
    in_outage = [first[u] - due[u] for u in due
                 if u in first and outage_at <= due[u] < outage_at + outage_s]
    return {"missed": sum(1 for u in due if starts[u] == 0),
            "exactly_once": sum(1 for u in due if starts[u] == 1),
            "doubled": len(doubled) - len(rerun_after_kill),
            "rerun_after_worker_kill": len(rerun_after_kill),
            "early": sum(1 for x in late if x < -EARLY_TOLERANCE_S),
            "lateness_s_p50": percentile(late, 50), "lateness_s_p99": percentile(late, 99),
            "lateness_s_max": round(max(late), 3) if late else None,
            "due_in_outage": len(in_outage),
            "lateness_in_outage_s_max": round(max(in_outage), 3) if in_outage else None}


def _fired_at(rig: Rig, jids: list[str]) -> dict[str, float]:
    """jid -> when ``cron_fire.lua`` enqueued it (Redis time, its status record's created_at)."""
    pipe = rig.r.pipeline(transaction=False)
    for jid in jids:
        pipe.hget(f"{STATUS_PREFIX}{jid}", "created_at")
    return {jid: float(raw) for jid, raw in zip(jids, pipe.execute(), strict=True) if raw}


def _periodic(rig: Rig, events: list[Event], kills_at: list[tuple[str, float]],
              init_slot_ms: int, end_slot_ms: int, every_s: float, grace_s: float,
              outage_at: float, outage_s: float) -> dict[str, Any]:
    """Slots fired (distinct jids per slot), reruns of one firing, and lateness."""
    jids: dict[int, set[str]] = defaultdict(set)
    first: dict[str, Event] = {}  # jid -> its first start
    starts_of: dict[str, int] = defaultdict(int)
    for e in events:
        parsed = parse_cron_uid(e.uid) if e.kind == "start" else None
        if parsed is None or parsed[0] != CRON_ENTRY:
            continue
        _, slot_ms, jid = parsed
        jids[slot_ms].add(jid)
        first.setdefault(jid, e)
        starts_of[jid] += 1
    slot_of = {jid: s for s, group in jids.items() for jid in group}
    started = {jid: e.ts - slot_of[jid] / 1000 for jid, e in first.items()}
    fired_late = {jid: t - slot_of[jid] / 1000 for jid, t in _fired_at(rig, list(first)).items()}
    step_ms = round(every_s * 1000)
    # the entry's first slot follows the one it was initialised with (read at once; if a slot
    # fired before that read, the window starts with the slot that fired)
    window = range(min([init_slot_ms + step_ms, *jids]), end_slot_ms + 1, step_ms)
    reruns = [j for j, n in starts_of.items() if n > 1]
    after_kill = [j for j in reruns if any(label == first[j].label and ts >= first[j].ts
                                           for label, ts in kills_at)]
    in_outage = [j for j in first if outage_at <= slot_of[j] / 1000 < outage_at + outage_s]
    due_in_outage = [s for s in window if outage_at <= s / 1000 < outage_at + outage_s]
    fire, start = list(fired_late.values()), list(started.values())
    return {
        "cron_every_s": every_s, "cron_grace_s": grace_s, "cron_window_slots": len(window),
        "cron_fired_slots": sum(1 for s in window if jids.get(s)),
        "cron_missed": sum(1 for s in window if not jids.get(s)),
        "cron_doubled": sum(1 for group in jids.values() if len(group) > 1),
        "cron_after_window": sum(1 for s in jids if s > end_slot_ms),
        "cron_rerun_after_worker_kill": len(after_kill),
        "cron_rerun_other": len(reruns) - len(after_kill),
        "cron_early": sum(1 for x in start if x < -EARLY_TOLERANCE_S),
        "cron_fired_past_grace": sum(1 for x in fire if x > grace_s),
        "cron_firings": len(first), "cron_fire_times_read": len(fire),
        "cron_fire_lateness_s_p50": percentile(fire, 50),
        "cron_fire_lateness_s_max": round(max(fire), 3) if fire else None,
        "cron_start_lateness_s_p50": percentile(start, 50),
        "cron_start_lateness_s_p99": percentile(start, 99),
        "cron_start_lateness_s_max": round(max(start), 3) if start else None,
        "cron_due_in_outage": len(due_in_outage),
        "cron_start_lateness_in_outage_s_max": (
            round(max(started[j] for j in in_outage), 3) if in_outage else None),
    }


def _killed_after_start(events: list[Any], uid: str, kills: list[tuple[str, float]]) -> bool:
    """Its first run was on a worker killed afterwards: a rerun of at-least-once delivery (the
    ack had not reached Redis), not a second firing of the schedule."""
    first = next(e for e in events if e.kind == "start" and e.uid == uid)
    return any(label == first.label and ts >= first.ts for label, ts in kills)
