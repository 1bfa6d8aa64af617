"""Scenarios 5 and 6: Redis killed and restarted on its AOF, and Redis made unreachable.

Both run a producer at a steady rate and two workers, measure throughput and pickup latency
before the fault, apply it, then drain and classify. Workers are never restarted by the test:
they must reconnect by themselves and still be the same processes at the end.

* :func:`restart`: SIGKILL redis-server ``kills`` times, restarting it on the same data folder
  (AOF, fsync every second) after ``down_s``. Acknowledged jobs must all survive: a process
  crash keeps what Redis wrote to the file before answering.
* :func:`unreachable`: the proxy in front of Redis cuts every client off for ``outage_s``, as a
  ``blackhole`` (partition: nothing flows, connections stay up) or a ``reset`` (connections
  closed and refused). No false recoveries are allowed when the outage is shorter than a lease.
"""

from __future__ import annotations

import time
from typing import Any

from ..load import Producer, per_second, pickup_ms
from ..procs import wait_until
from ..results import classify, dead_reasons, drain
from ..rig import Rig

PICKUP_PROBES = 15
BASELINE_S = 2.0
DRAIN_S = 60.0
BEAT_MAX_AGE_S = 6.0  # three beats at the default 2 s interval


def _start(rig: Rig, rate: float, concurrency: int) -> tuple[Producer, list[Any], float]:
    workers = [rig.worker(f"w{i}", concurrency=concurrency) for i in (1, 2)]
    wait_until(lambda: rig.r.zcard("conveyor:leases") == 2, 30, "two registered workers")
    before = pickup_ms(rig, PICKUP_PROBES)
    producer = Producer(rig, rate).start()
    time.sleep(BASELINE_S)  # the baseline window is the measurement, not a wait for a condition
    return producer, workers, before or 0.0


def _finish(rig: Rig, producer: Producer, workers: list[Any], fault_start: float,
            fault_end: float, baseline_from: float, beat_max_age_s: float = BEAT_MAX_AGE_S,
            drain_s: float = DRAIN_S) -> dict[str, Any]:
    time.sleep(BASELINE_S)  # throughput after the fault is measured over this window
    producer.finish()
    alive = sum(w.alive for w in workers)
    try:
        drain(rig.r, drain_s if alive else 2.0)
        drained = True
    except AssertionError:
        drained = False  # reported: what is left pending counts as lost below
    events = rig.ledger.events()
    verdict = classify(rig.history, events, dead_reasons(rig.r))
    counts = per_second(rig)
    base = [counts.get(s, 0) for s in range(int(baseline_from) + 1, int(fault_start))]
    baseline = sum(base) / max(1, len(base))
    back = next((s - fault_end for s in range(int(fault_end), int(fault_end) + 60)
                 if counts.get(s, 0) >= 0.8 * baseline), None)
    return {"drained": drained, "fresh_heartbeats": fresh_beats(rig, beat_max_age_s),
            "baseline_jobs_s": round(baseline, 1),
            "back_to_baseline_s": None if back is None else round(max(0.0, back), 2),
            "workers_alive": alive, "workers": len(workers),
            "pickup_ms_after": pickup_ms(rig, PICKUP_PROBES) if alive and drained else None,
            "during_fault": producer.summary(*_mono_window(rig, fault_start, fault_end)),
            **verdict}


def fresh_beats(rig: Rig, max_age_s: float) -> int:
    """Workers whose Sidekiq process hash was beaten within ``max_age_s`` (heartbeat alive)."""
    now = time.time()
    fresh = 0
    for identity in rig.r.smembers("processes"):
        beat = rig.r.hget(identity, "beat")
        fresh += bool(beat) and now - float(beat) < max_age_s
    return fresh


def _mono_window(rig: Rig, start: float, end: float) -> tuple[float, float]:
    """Ledger times -> the monotonic clock the producer uses."""
    offset = time.monotonic() - rig.ledger.now()
    return start + offset, end + offset


def restart(rig: Rig, *, kills: int = 2, down_s: float = 1.0, every_s: float = 3.0,
            rate: float = 100.0, concurrency: int = 4) -> dict[str, Any]:
    producer, workers, before = _start(rig, rate, concurrency)
    first = rig.ledger.now()
    restarts = []
    for _ in range(kills):
        killed_at = rig.ledger.record("redis-kill")
        rig.server.kill()
        time.sleep(down_s)  # the outage itself
        rig.server.start()
        up_at = rig.ledger.record("redis-up")
        wait_until(lambda up=up_at: any(e.ts > up for e in rig.ledger.tail(5)
                                        if e.kind == "start"), 30, "a job to start after restart")
        first_start = next(e.ts for e in rig.ledger.tail(50) if e.kind == "start" and e.ts > up_at)
        restarts.append({"down_s": round(up_at - killed_at, 2),
                         "first_start_after_up_s": round(first_start - up_at, 3)})
        time.sleep(every_s)
    out = _finish(rig, producer, workers, first, rig.ledger.now() - every_s, first - BASELINE_S)
    return {"scenario": "redis_restart_aof", "kills": kills, "rate": rate,
            "pickup_ms_before": before, "restarts": restarts, **out}


def unreachable(rig: Rig, *, outage_s: float, mode: str, rate: float = 100.0,
                concurrency: int = 4, beat_max_age_s: float = BEAT_MAX_AGE_S,
                drain_s: float = DRAIN_S) -> dict[str, Any]:
    assert rig.proxy is not None, "unreachable() needs a rig with proxy=True"
    producer, workers, before = _start(rig, rate, concurrency)
    cut_at = rig.ledger.record("cut", "-", mode)
    getattr(rig.proxy, mode)()
    time.sleep(outage_s)  # the outage itself
    rig.proxy.heal()
    healed_at = rig.ledger.record("heal", "-", mode)
    out = _finish(rig, producer, workers, cut_at, healed_at, cut_at - BASELINE_S,
                  beat_max_age_s, drain_s)
    fenced = sum(w.log_path.read_text(errors="replace").count("lost its lease") for w in workers)
    return {"scenario": "redis_unreachable", "mode": mode, "outage_s": outage_s, "rate": rate,
            "pickup_ms_before": before, "leases_lost": fenced, **out}
