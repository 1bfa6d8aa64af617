"""Medians of the repeated runs, ratios to the best peer, the targets of issue 8, and the table.

Every figure here is computed from the run's JSON lines; nothing is typed in by hand.
"""

from __future__ import annotations

import os
import platform
import statistics
from collections import defaultdict
from typing import Any

import redis

from .specs import ALL_PEERS, PYTHON_PEERS

Summary = dict[str, Any]
# workload -> (metric columns shown, headline metric, True when higher is better)
COLUMNS: dict[str, tuple[list[str], str, bool]] = {
    "noop_enqueue_single": (["per_s", "cmds_per_job"], "per_s", True),
    "noop_enqueue_bulk": (["per_s", "cmds_per_job"], "per_s", True),
    "noop_drain": (["per_s", "concurrency", "procs", "cpu_us_per_job", "redis_cpu_us_per_job",
                    "cmds_per_job", "rss_peak_mb", "pss_peak_mb"], "per_s", True),
    "sleep10_c50": (["per_s", "pct_of_ideal", "concurrency", "procs", "cpu_us_per_job",
                     "cmds_per_job", "rss_peak_mb", "pss_peak_mb"], "per_s", True),
    "sleep10_cmax": (["per_s", "pct_of_ideal", "concurrency", "procs", "cpu_us_per_job",
                      "cmds_per_job", "rss_peak_mb", "pss_peak_mb"], "per_s", True),
    "pickup_latency": (["p50_ms", "p99_ms", "max_ms"], "p99_ms", False),
    "async_1s_10k": (["per_s", "pct_of_ideal", "rss_peak_mb", "pss_peak_mb"], "pct_of_ideal",
                     True),
}


def machine(r: redis.Redis) -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gb": round(mem_kb / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "redis": r.info("server")["redis_version"]}


def summarise(records: list[dict[str, Any]]) -> Summary:
    """Medians per (workload, peer) over the measured (non-calibration, error-free) runs."""
    runs: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    errors: dict[tuple[str, str], list[str]] = defaultdict(list)
    header: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    loads: list[float] = []
    for rec in records:
        if rec.get("type") == "run":
            header = rec
        elif rec.get("workload") == "limits":
            limits = rec
        elif "error" in rec:
            errors[(rec["workload"], rec["peer"])].append(rec["error"])
        elif not rec.get("calibration") and "skipped" not in rec:
            runs[(rec["workload"], rec["peer"])].append(rec)
            loads.append(rec["load_before"][0])
    table: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for (workload, peer), rs in runs.items():
        cols = COLUMNS.get(workload, ([], "", True))[0]
        med = {c: statistics.median(r[c] for r in rs) for c in cols if all(c in r for r in rs)}
        med["runs"] = len(rs)
        table[workload][peer] = med
    return {"header": header, "limits": limits, "table": dict(table),
            "errors": {f"{w}/{p}": e for (w, p), e in errors.items()},
            "load": _spread(loads)}


def _spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def best_peer(rows: dict[str, dict[str, float]], metric: str, higher: bool,
              among: tuple[str, ...] = PYTHON_PEERS) -> tuple[str, float] | None:
    found = [(p, rows[p][metric]) for p in among if p in rows and metric in rows[p]]
    if not found:
        return None
    return (max if higher else min)(found, key=lambda pv: pv[1])


def ratio(summary: Summary, workload: str, metric: str, higher: bool,
          against: tuple[str, ...] = PYTHON_PEERS) -> tuple[float, str] | None:
    """Conveyor's value divided by the best of ``against`` (and that peer's name)."""
    rows = summary["table"].get(workload, {})
    best = best_peer(rows, metric, higher, against)
    ours = rows.get("conveyor", {}).get(metric)
    if best is None or ours is None or best[1] == 0:
        return None
    return ours / best[1], best[0]


def targets(s: Summary) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for each target of issue 8 that this run measured."""
    t = s["table"]
    out: list[tuple[str, str, bool | None]] = []

    def add(name: str, value: float | None, fmt: str, ok: bool | None) -> None:
        out.append((name, "not measured" if value is None else fmt.format(value),
                    None if value is None else ok))

    r = ratio(s, "noop_drain", "per_s", True)
    add("no-op drain, 1 process >= 4x best Python peer", r and r[0],
        "{:.2f}x" + (f" {r[1]}" if r else ""), bool(r and r[0] >= 4))
    r = ratio(s, "noop_drain", "per_s", True, ("sidekiq",))
    add("no-op drain, 1 process >= Sidekiq 6.4.1", r and r[0], "{:.2f}x", bool(r and r[0] >= 1))
    bulk = t.get("noop_enqueue_bulk", {}).get("conveyor", {}).get("per_s")
    add("bulk enqueue >= 100,000 jobs/s", bulk, "{:,.0f}/s", bool(bulk and bulk >= 100_000))
    single = t.get("noop_enqueue_single", {}).get("conveyor", {}).get("per_s")
    ping = s["limits"].get("python_sync_ping_per_s")
    rtt = single / ping if single and ping else None
    add("single enqueue bounded by one round trip (rate / PING rate)", rtt, "{:.2f}",
        bool(rtt and rtt >= 0.5))
    p99 = t.get("pickup_latency", {}).get("conveyor", {}).get("p99_ms")
    add("pickup latency p99 <= 5 ms", p99, "{:.2f} ms", bool(p99 is not None and p99 <= 5))
    many = t.get("async_1s_10k", {}).get("conveyor", {})
    add("10,000 x 1 s jobs >= 90% of ideal", many.get("pct_of_ideal"), "{:.1f}%",
        many.get("pct_of_ideal", 0) >= 90)
    add("10,000 x 1 s jobs RSS < 300 MB", many.get("rss_peak_mb"), "{:.0f} MB",
        many.get("rss_peak_mb", 1e9) < 300)
    r = ratio(s, "noop_drain", "cpu_us_per_job", False)
    add("CPU per no-op job <= 1/3 of best Python peer", r and r[0],
        "{:.2f}x" + (f" {r[1]}" if r else ""), bool(r and r[0] <= 1 / 3))
    return out


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if float(v).is_integer() or abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}"


def rows(s: Summary, workload: str) -> tuple[list[str], list[list[str]]]:
    cols, head, higher = COLUMNS[workload]
    data = s["table"].get(workload, {})
    best = best_peer(data, head, higher)
    header = ["peer", *cols, f"{head} / best Python peer"]
    body = []
    for peer in ALL_PEERS:
        if peer in data:
            v = data[peer]
            rel = v.get(head, 0) / best[1] if best and best[1] and head in v else None
            body.append([peer, *(_fmt(v.get(c)) for c in cols), _fmt(rel)])
        elif any(k == f"{workload}/{peer}" for k in s["errors"]):
            body.append([peer, "failed", *[""] * len(cols)])
    return header, body


def table(s: Summary) -> str:
    lines = [f"load average (1 min) during the runs: {s['load']}"]
    for workload in COLUMNS:
        header, body = rows(s, workload)
        if not body:
            continue
        widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=False)]
        lines += ["", workload]
        for row in [header, *body]:
            lines.append("  ".join(str(x).rjust(w) for x, w in zip(row, widths, strict=False)))
    lines += ["", "targets:"]
    lines += [f"  {'MET ' if ok else 'MISS' if ok is False else '  - '} {name}: {value}"
              for name, value, ok in targets(s)]
    return "\n".join(lines)
