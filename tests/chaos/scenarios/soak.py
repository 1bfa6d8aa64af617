"""Scenario 14, a soak: steady load for a while; RSS, Redis memory and key counts must stay flat.

A producer submits ``rate`` jobs a second to two workers for ``duration_s``; every
``sample_every_s`` the scenario samples each worker's RSS (with its executor children), Redis's
``used_memory``, the key count, and the per-job status records (``conveyor:job:*``, which live
for ``status_ttl_s`` by design). Growth is judged between the first sample after warm-up
(``warmup_s``) and the last one. For key counts and memory to plateau within a short run, the
rig should set a short ``CONVEYOR_STATUS_TTL_S``; with the default (7 days) status records grow
with the jobs run until they start expiring, which the figures show as ``status_records``.
"""

from __future__ import annotations

import time
from typing import Any

import psutil

from ..load import Producer
from ..procs import WorkerProc, wait_until
from ..results import classify, dead_reasons, drain
from ..rig import Rig

STATUS_PREFIX = "conveyor:job:"
# Keys that come and go with the work in flight (a queue with a backlog, a worker's claim list
# and in-flight hash, the schedule): up to a few per worker at any instant, so between two
# samples they differ by a few without anything leaking. They are counted apart and bounded;
# "other" keys are everything else, and must stay flat.
TRANSIENT_PREFIXES = ("queue:", "conveyor:claim:", "conveyor:inflight:", "schedule", "retry")
TRANSIENT_PER_WORKER = 3  # its claim list, its in-flight hash, and slack for one more queue
# All counts in one atomic step: counted apart (a SCAN, then DBSIZE), the status records created
# in between showed up as "other" keys.
COUNT_KEYS = """
local all = redis.call('KEYS', '*')
local status, transient = 0, 0
for _, key in ipairs(all) do
  if string.sub(key, 1, #ARGV[1]) == ARGV[1] then
    status = status + 1
  else
    for i = 2, #ARGV do
      if string.sub(key, 1, #ARGV[i]) == ARGV[i] then transient = transient + 1; break end
    end
  end
end
return {#all, status, transient}
"""


def _rss_kb(w: WorkerProc) -> int:
    return w.rss_kb() + sum(c.memory_info().rss // 1024 for c in w.children())


def _sample(rig: Rig, workers: list[WorkerProc], began: float) -> dict[str, Any]:
    info = rig.r.info("memory")
    keys, status, transient = (int(n) for n in
                               rig.r.eval(COUNT_KEYS, 0, STATUS_PREFIX, *TRANSIENT_PREFIXES))
    return {"t": round(time.monotonic() - began, 1), "rss_kb": [_rss_kb(w) for w in workers],
            "redis_used_memory": int(info["used_memory"]), "keys": keys,
            "status_records": status, "transient_keys": transient,
            "other_keys": keys - status - transient,
            "fds": [psutil.Process(w.pid).num_fds() for w in workers]}


def run(rig: Rig, *, duration_s: float, rate: float, sample_every_s: float,
        warmup_s: float | None = None) -> dict[str, Any]:
    workers = [rig.worker(f"w{i}", concurrency=4) for i in (1, 2)]
    wait_until(lambda: rig.r.zcard("conveyor:leases") == 2, 30, "two registered workers")
    producer = Producer(rig, rate, job_ms=5).start()
    began = time.monotonic()
    samples = []
    while time.monotonic() - began < duration_s:
        time.sleep(sample_every_s)  # the sampling period is the measurement
        samples.append(_sample(rig, workers, began))
    producer.finish()
    drain(rig.r, 60)
    warm = warmup_s if warmup_s is not None else duration_s / 3
    base = next(s for s in samples if s["t"] >= warm)
    last = samples[-1]
    verdict = classify(rig.history, rig.ledger.events(), dead_reasons(rig.r))
    return {"scenario": "soak", "duration_s": duration_s, "rate": rate,
            "rss_growth_kb": [b - a for a, b in zip(base["rss_kb"], last["rss_kb"], strict=True)],
            "redis_memory_growth_bytes": last["redis_used_memory"] - base["redis_used_memory"],
            "other_keys_growth": last["other_keys"] - base["other_keys"],
            "status_records_growth": last["status_records"] - base["status_records"],
            "keys_growth": last["keys"] - base["keys"],
            "transient_keys_max": max(s["transient_keys"] for s in samples),
            "fds_growth": [b - a for a, b in zip(base["fds"], last["fds"], strict=True)],
            "workers_alive": sum(w.alive for w in workers),
            "samples": samples, **verdict}
