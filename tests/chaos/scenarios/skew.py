"""Clock skew (the reference plan's T7): workers whose wall clocks are minutes off.

Worker A runs ``ahead_s`` ahead and worker B ``behind_s`` behind (``chaos.offset_clock``). A job
lasting three leases runs on one of them while the other's recoverer watches; jobs scheduled a
few seconds ahead (on the Redis clock, by an unskewed client) are promoted by the skewed
schedulers. Leases and schedules use Redis ``TIME``, so there must be no false recovery and no
early or late promotion (beyond a scheduler tick).
"""

from __future__ import annotations

from typing import Any

from conveyor.job import new_jid

from ..ledger import runs
from ..procs import wait_until
from ..results import drain, percentile
from ..rig import Rig, job


def run(rig: Rig, *, ahead_s: float, behind_s: float, lease_s: float, scheduled: int = 20
        ) -> dict[str, Any]:
    for label, offset in (("ahead", ahead_s), ("behind", -behind_s)):
        rig.worker(label, prefix=("-m", "chaos.offset_clock", str(offset)))
    wait_until(lambda: rig.r.zcard("conveyor:leases") == 2, 30, "two registered workers")
    long_uid = new_jid()
    rig.submit([job("work", long_uid, int(3 * lease_s * 1000))])
    now = rig.ledger.now()
    due = {new_jid(): now + 2 + i * 0.2 for i in range(scheduled)}
    rig.submit([job("work", uid, 0, at=at) for uid, at in due.items()])
    drain(rig.r, 3 * lease_s + 30)
    events = rig.ledger.events()
    first = {e.uid: e.ts for e in reversed(events) if e.kind == "start"}
    late = [first[u] - at for u, at in due.items() if u in first]
    return {"scenario": "clock_skew", "ahead_s": ahead_s, "behind_s": behind_s,
            "long_job_starts": runs(events, "start")[long_uid],
            "scheduled_missed": sum(1 for u in due if u not in first),
            "scheduled_early": sum(1 for x in late if x < -0.05),
            "lateness_s_max": round(max(late), 3) if late else None,
            "lateness_s_p50": percentile(late, 50)}
