"""The workloads of issue 8, each repeated and recorded as JSON lines (one line per run).

1. ``noop_enqueue_single`` / ``noop_enqueue_bulk``: enqueue rate of no-op jobs with one int
   argument, and ``noop_drain``: one worker process draining them.
2. ``sleep10_c50`` / ``sleep10_cmax``: 10 ms sleeping jobs at concurrency 50 and at the peer's
   highest (see ``specs.py``).
3. ``pickup_latency``: an idle worker; one job at a time, GAP ms after the previous one ran.
4. ``async_1s_10k``: 10,000 one-second coroutine jobs at once in one process.
5. Sidekiq runs 1-3 like the Python peers.

A drain's job count is sized from a calibration run so each measured run lasts about
``target_s`` seconds (a fixed count in smoke mode); the calibration run is recorded, marked, and
left out of the medians. Runs are interleaved: round 1 runs every peer once, then round 2..., so
a change in the machine's load (it is shared) spreads over all peers instead of one.
"""

from __future__ import annotations

import json
import math
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .runner import PeerRunner, command_delta, commandstats

SLEEP_S = 0.010
CALIBRATION_WAVES = 5
LONG_JOB_S = 1.0


@dataclass(frozen=True)
class Config:
    repeat: int = 3
    single_n: int = 5_000
    bulk_n: int = 100_000
    drain_n: int | None = None  # fixed job count (smoke) instead of calibrating
    calibrate_n: int = 1_000
    target_s: float = 4.0
    min_n: int = 500
    max_n: int = 300_000
    latency_samples: int = 100
    gap_ms: float = 50.0
    many_n: int = 10_000
    timeout_s: float = 300.0


class Recorder:
    """Appends one JSON line per measurement (and keeps them for the summary)."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        self.records: list[dict[str, Any]] = []
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        record = {"run": self.run_id, **record}
        self.records.append(record)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def measure(self, peer: str, workload: str, fn: Callable[[], dict[str, Any]],
                **extra: Any) -> dict[str, Any]:
        load_before = os.getloadavg()
        started = time.time()
        try:
            result = fn()
        except Exception as exc:
            result = {"error": f"{type(exc).__name__}: {exc}",
                      "trace": traceback.format_exc()[-1500:]}
        record = {"peer": peer, "workload": workload, **extra, **result,
                  "load_before": [round(x, 2) for x in load_before],
                  "load_after": [round(x, 2) for x in os.getloadavg()],
                  "started_at": round(started, 3), "wall_s": round(time.time() - started, 3)}
        self.write(record)
        status = record.get("error", "ok")
        print(f"  {peer:9} {workload:20} {_headline(record):>28}  load {load_before[0]:.2f}"
              f"  {str(status)[:80] if status != 'ok' else ''}", flush=True)
        return record


def _headline(rec: dict[str, Any]) -> str:
    if "per_s" in rec:
        return f"{rec['per_s']:,.0f}/s (n={rec.get('n', '?')})"
    if "p99_ms" in rec:
        return f"p50 {rec['p50_ms']:.2f} ms p99 {rec['p99_ms']:.2f} ms"
    return str(rec.get("skipped", ""))


DRAINS = (("noop_drain", "noop"), ("sleep10_c50", "sleep"), ("sleep10_cmax", "sleep"))


def concurrency(runner: PeerRunner, workload: str) -> int | None:
    """The concurrency a drain workload runs at for this peer (None: not run for it)."""
    spec = runner.spec
    if workload == "noop_drain":
        return spec.one_process_concurrency
    if workload == "sleep10_c50":
        return min(50, spec.max_concurrency)
    return spec.max_concurrency if spec.max_concurrency > 50 else None  # RQ: 50 was its highest


def calibrate(runner: PeerRunner, cfg: Config, rec: Recorder) -> dict[str, int]:
    """Jobs per drain so that one run lasts about cfg.target_s (recorded, not in the medians)."""
    sizes = {}
    for workload, kind in DRAINS:
        c = concurrency(runner, workload)
        if c is None:
            continue
        if cfg.drain_n is not None:
            sizes[workload] = cfg.drain_n
            continue
        n = max(cfg.calibrate_n, CALIBRATION_WAVES * c)  # several waves, or the rate is moot
        cal = rec.measure(runner.spec.name, workload,
                          lambda: _drain(runner, kind, n, c),  # noqa: B023
                          repeat=-1, calibration=True)
        rate = cal.get("per_s") or cfg.min_n / cfg.target_s
        sizes[workload] = max(cfg.min_n, min(cfg.max_n, round(rate * cfg.target_s)))
    return sizes


def run_round(runner: PeerRunner, cfg: Config, rec: Recorder, i: int,
              sizes: dict[str, int]) -> None:
    """One run of every workload for one peer (the caller interleaves peers round by round, so
    a change in the machine's load spreads over all peers instead of landing on one)."""
    name = runner.spec.name
    rec.measure(name, "noop_enqueue_single", lambda: _enqueue(runner, cfg.single_n, "single"),
                repeat=i)
    rec.measure(name, "noop_enqueue_bulk", lambda: _enqueue(runner, cfg.bulk_n, "bulk"),
                repeat=i)
    for workload, kind in DRAINS:
        c = concurrency(runner, workload)
        if c is not None:
            rec.measure(name, workload, lambda: _drain(runner, kind, sizes[workload], c),  # noqa: B023
                        repeat=i)
    rec.measure(name, "pickup_latency", lambda: _latency(runner, cfg), repeat=i,
                concurrency=runner.spec.one_process_concurrency)
    if runner.spec.async_jobs:
        rec.measure(name, "async_1s_10k", lambda: _many(runner, cfg), repeat=i)


def _enqueue(runner: PeerRunner, n: int, mode: str) -> dict[str, Any]:
    r = runner.env.r
    r.flushall()
    before = commandstats(r)
    out = runner.driver("enqueue", "--kind", "noop", "--n", str(n), "--mode", mode)
    cmds = command_delta(before, commandstats(r))
    if "per_s" in out:
        out["cmds_per_job"] = sum(cmds.values()) / n
    return out


def _drain(runner: PeerRunner, kind: str, n: int, concurrency: int) -> dict[str, Any]:
    out = runner.drain(kind, n, concurrency)
    if kind == "sleep" and "per_s" in out:
        out["pct_of_ideal"] = 100 * out["per_s"] / (concurrency / SLEEP_S)
    return out


def _latency(runner: PeerRunner, cfg: Config) -> dict[str, Any]:
    out = runner.latency(cfg.latency_samples, cfg.gap_ms)
    lat = sorted(out.pop("latencies_ms", []))
    if lat:
        out.update(samples=len(lat), p50_ms=lat[len(lat) // 2],
                   p99_ms=lat[min(len(lat) - 1, math.ceil(len(lat) * 0.99) - 1)], max_ms=lat[-1])
    return out


def _many(runner: PeerRunner, cfg: Config) -> dict[str, Any]:
    out = runner.drain("second", cfg.many_n, cfg.many_n)
    if "first_start_to_last_s" in out:
        took = out["first_start_to_last_s"]
        out["per_s"] = cfg.many_n / took
        out["pct_of_ideal"] = 100 * LONG_JOB_S / took
    return out
