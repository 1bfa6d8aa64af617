"""Scenario 4, alive but cut off: a zombie's late ack must change nothing; a busy loop is not death.

``sigstop`` and ``partition``: worker A holds a job that will succeed and one that will fail;
A is frozen (SIGSTOP) or cut off behind its own proxy (blackhole) for ``pause_s``, longer than a
lease; worker B recovers and finishes both. Then A comes back and reports its own late results.
Those must be refused by the fencing tokens: the succeeded job stays completed, the failed one
is in the dead set once, nothing is requeued or left in flight, and A goes on working.

``busy_loop``: an asyncio job spins on the event loop for ``pause_s``. The heartbeat renews the
lease from its own thread, so the job must not be recovered (started once, never on B).
"""

from __future__ import annotations

import signal
import time
from typing import Any

from conveyor.job import new_jid

from ..ledger import runs
from ..procs import WorkerProc, wait_until
from ..proxy import Proxy
from ..results import dead_reasons, drain, pending_jobs
from ..rig import Rig, job

JOB_MS = 300


def _started_on(rig: Rig, uid: str, label: str, after: float = 0.0) -> bool:
    return any(e.uid == uid and e.label == label and e.ts > after
               for e in rig.ledger.events(frozenset({"start"})))


def _finished_on(rig: Rig, uid: str, label: str, after: float = 0.0) -> bool:
    return any(e.uid == uid and e.label == label and e.ts > after
               for e in rig.ledger.events(frozenset({"finish"})))


def busy_loop(rig: Rig, *, pause_s: float) -> dict[str, Any]:
    a = rig.worker("a")
    uid = new_jid()
    rig.submit([job("block_loop", uid, int(pause_s * 1000))])
    wait_until(lambda: _started_on(rig, uid, "a"), 30, "the busy job to start on A")
    rig.worker("b")
    wait_until(lambda: _finished_on(rig, uid, "a"), pause_s + 30, "the busy job to finish")
    drain(rig.r, 30)
    starts = runs(rig.ledger.events(), "start")
    return {"scenario": "fencing", "variant": "busy_loop", "pause_s": pause_s,
            "starts": starts[uid], "started_on_b": _started_on(rig, uid, "b"),
            "worker_alive": a.alive, "state": _state(rig, uid)}


def zombie(rig: Rig, *, variant: str, pause_s: float) -> dict[str, Any]:
    proxy = Proxy(rig.server.port) if variant == "partition" else None
    try:
        return _zombie(rig, variant, pause_s, proxy)
    finally:
        if proxy:
            proxy.close()


def _zombie(rig: Rig, variant: str, pause_s: float, proxy: Proxy | None) -> dict[str, Any]:
    a = rig.worker("a", redis_url=proxy.url if proxy else rig.url)
    ok, bad = new_jid(), new_jid()
    rig.submit([job("work", ok, JOB_MS), job("fail", bad, JOB_MS, retry=0)])
    wait_until(lambda: _started_on(rig, ok, "a") and _started_on(rig, bad, "a"), 30,
               "both jobs to start on A")
    cut_at = _cut(rig, a, proxy)
    rig.worker("b")
    wait_until(lambda: _finished_on(rig, ok, "b") and _finished_on(rig, bad, "b"), 30,
               "B to finish the recovered jobs")
    time.sleep(max(0.0, cut_at + pause_s - rig.ledger.now()))  # the cut lasts pause_s
    healed_at = _heal(rig, a, proxy)
    refused = _wait_refusals(a)
    # enough work that B alone needs seconds for it, so A must take some if it fetches again
    rig.submit([job("work", new_jid(), 100) for _ in range(200)])
    wait_until(lambda: any(e.label == "a" and e.ts > healed_at
                           for e in rig.ledger.events(frozenset({"start"}))), 30,
               "A to run jobs again")
    drain(rig.r, 30)
    dead = dead_reasons(rig.r)
    return {"scenario": "fencing", "variant": variant, "pause_s": pause_s,
            "late_results_refused": refused, "worker_alive": a.alive,
            "ok_state": _state(rig, ok), "bad_state": _state(rig, bad),
            "dead_entries_for_bad": sum(1 for jid in dead if jid == bad),
            "dead_total": len(dead), "retry_total": int(rig.r.zcard("retry")),
            "pending": pending_jobs(rig.r),
            "zombie_finished_late": _finished_on(rig, ok, "a") and _finished_on(rig, bad, "a"),
            "ok_finishes": runs(rig.ledger.events(), "finish")[ok]}


def _cut(rig: Rig, a: WorkerProc, proxy: Proxy | None) -> float:
    at = rig.ledger.record("cut", "-", "a", a.pid)
    if proxy:
        proxy.blackhole()
    else:
        a.signal(signal.SIGSTOP)
    return at


def _heal(rig: Rig, a: WorkerProc, proxy: Proxy | None) -> float:
    at = rig.ledger.record("heal", "-", "a", a.pid)
    if proxy:
        proxy.heal()
    else:
        a.signal(signal.SIGCONT)
    return at


def _wait_refusals(a: WorkerProc) -> bool:
    """Both late results refused, as A's log says (the only place a refusal is visible)."""
    def both() -> bool:
        text = a.log_path.read_text(errors="replace")
        return "ack(s) refused" in text and "refused: it was recovered" in text
    try:
        wait_until(both, 15, "A to report its late results")
    except AssertionError:
        return False
    return True


def _state(rig: Rig, uid: str) -> str:
    value = rig.r.hget(f"conveyor:job:{uid}", "state")
    return value.decode() if value else ""
