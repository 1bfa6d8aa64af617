"""Scenario 2, graceful shutdown: TERM while long and short jobs run.

One worker runs ``long_jobs`` jobs longer than its grace period and a stream of short ones. At
TERM: short jobs in flight must finish and not run again, long ones must be handed back to the
queue exactly once, nothing may start on that worker after TERM, and it must exit by itself
soon after the grace period. The test KILLs it only if it is still alive ``kill_margin_s`` past
the grace (and reports that). A fresh worker then drains the queue.
"""

from __future__ import annotations

import signal
import subprocess
import time
from typing import Any

from conveyor.job import new_jid

from ..ledger import runs
from ..procs import wait_until
from ..results import classify, dead_reasons, drain
from ..rig import Rig, job

# A fetch already answered when TERM arrives still starts its jobs; they start within this.
SIGNAL_SLACK_S = 0.05


def run(rig: Rig, *, grace_s: float, long_s: float, long_jobs: int = 2, short_jobs: int = 200,
        short_ms: int = 100, concurrency: int = 6, kill_margin_s: float = 5.0) -> dict[str, Any]:
    env = {"CONVEYOR_SHUTDOWN_GRACE_S": str(grace_s)}
    long_ids = [new_jid() for _ in range(long_jobs)]
    rig.submit([job("work", u, int(long_s * 1000)) for u in long_ids])
    rig.submit([job("work", new_jid(), short_ms) for _ in range(short_jobs)])
    a = rig.worker("a", concurrency=concurrency, env=env)
    wait_until(lambda: len(runs(rig.ledger.events(), "finish")) >= concurrency, 30,
               "some short jobs to finish")
    term_at = rig.ledger.record("term", "-", "a", a.pid)
    sent = time.monotonic()
    a.signal(signal.SIGTERM)
    try:
        a.proc.wait(grace_s + kill_margin_s)
        needed_kill = False
    except subprocess.TimeoutExpired:
        a.kill()
        needed_kill = True
    exit_s = time.monotonic() - sent
    before = [e for e in rig.ledger.events() if e.label == "a"]
    started_a = {e.uid for e in before if e.kind == "start" and e.ts <= term_at}
    finished_a = {e.uid for e in before if e.kind == "finish"}
    short_in_flight = ((started_a - finished_a) | {
        e.uid for e in before if e.kind == "finish" and e.ts > term_at}) - set(long_ids)
    rig.worker("b", concurrency=concurrency)
    drain(rig.r, 60 + long_s)
    events = rig.ledger.events()
    starts = runs(events, "start")
    return {
        "scenario": "graceful_shutdown", "grace_s": grace_s, "long_s": long_s,
        "exit_after_term_s": round(exit_s, 2), "needed_kill": needed_kill,
        "exit_code": a.proc.returncode,
        "started_after_term": sum(1 for e in before if e.kind == "start"
                                  and e.ts > term_at + SIGNAL_SLACK_S),
        "short_in_flight_at_term": len(short_in_flight),
        "short_rerun": sum(1 for u in short_in_flight if starts[u] > 1),
        "long_starts": [starts[u] for u in long_ids],
        "long_started_on_b": sum(1 for e in events if e.kind == "start" and e.label == "b"
                                 and e.uid in long_ids),
        "long_finished_on_a_after_term": sum(1 for e in before if e.kind == "finish"
                                             and e.uid in long_ids and e.ts > term_at),
        **classify(rig.history, events, dead_reasons(rig.r)),
    }
