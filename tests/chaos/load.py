"""Steady load and the measurements taken around a fault.

* :class:`Producer`: a thread that submits one job every ``1/rate`` seconds through the rig
  (so each submission lands in the history as acknowledged, failed or indeterminate) and keeps
  each call's latency and outcome.
* :func:`pickup_ms`: the latency from an acknowledged enqueue to the job's start, one job at a
  time on idle workers (what blocking on Redis instead of polling buys).
* :func:`per_second`: finished jobs per ledger second, to compare throughput before and after.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from conveyor.job import new_jid

from .procs import wait_until
from .results import percentile
from .rig import Rig, job


@dataclass
class Call:
    at: float  # monotonic
    latency_s: float
    outcome: str


@dataclass
class Producer:
    rig: Rig
    rate: float
    job_ms: int = 20
    calls: list[Call] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, name="chaos-producer", daemon=True)

    def start(self) -> Producer:
        self.thread.start()
        return self

    def finish(self, timeout_s: float = 60.0) -> None:
        self.stop.set()
        self.thread.join(timeout_s)

    def _run(self) -> None:
        period = 1.0 / self.rate
        next_at = time.monotonic()
        while not self.stop.is_set():
            uid = new_jid()
            began = time.monotonic()
            self.rig.submit([job("work", uid, self.job_ms)])
            outcome = "acknowledged" if uid in self.rig.history.acknowledged else "error"
            self.calls.append(Call(began, time.monotonic() - began, outcome))
            next_at = max(next_at + period, time.monotonic() - period)
            self.stop.wait(max(0.0, next_at - time.monotonic()))

    def summary(self, since: float, until: float) -> dict[str, float | int | None]:
        """Calls that began within [since, until): count, errors, latency p50/p99/max."""
        window = [c for c in self.calls if since <= c.at < until]
        lat = [c.latency_s for c in window]
        return {"calls": len(window), "errors": sum(c.outcome != "acknowledged" for c in window),
                "latency_s_p50": percentile(lat, 50), "latency_s_p99": percentile(lat, 99),
                "latency_s_max": round(max(lat), 3) if lat else None}


def pickup_ms(rig: Rig, n: int, timeout_s: float = 10.0) -> float | None:
    """Median enqueue-to-start latency over ``n`` jobs sent one at a time (ledger clock)."""
    out = []
    for _ in range(n):
        uid = new_jid()
        sent = rig.ledger.now()
        rig.submit([job("work", uid, 0)])
        if uid not in rig.history.acknowledged:
            continue
        wait_until(lambda uid=uid: _start_of(rig, uid), timeout_s, f"{uid} to start",
                   poll_s=0.002)
        out.append(((_start_of(rig, uid) or sent) - sent) * 1000)
    return percentile(out, 50)


def _start_of(rig: Rig, uid: str) -> float | None:
    for e in reversed(rig.ledger.tail(20)):
        if e.uid == uid and e.kind == "start":
            return e.ts
    return None


def per_second(rig: Rig) -> Counter[int]:
    """Finished jobs per whole ledger second."""
    return Counter(int(e.ts) for e in rig.ledger.events(frozenset({"finish"})))
