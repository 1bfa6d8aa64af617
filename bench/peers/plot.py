"""Draws one PNG per workload from a run's summary; runs in the plot venv (matplotlib only).

    /tmp/bench-venvs/plot/bin/python bench/peers/plot.py summary.json docs/img
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PEERS = ("conveyor", "rq", "celery", "dramatiq", "arq", "saq", "taskiq", "huey", "sidekiq")
# file name -> (title, y label, log scale, [(workload, metric, legend label)])
FIGURES: dict[str, tuple[str, str, bool, list[tuple[str, str, str]]]] = {
    "bench-enqueue.png": ("1. Enqueue no-op jobs (one client process)", "jobs/s", True,
                          [("noop_enqueue_single", "per_s", "single"),
                           ("noop_enqueue_bulk", "per_s", "bulk")]),
    "bench-drain.png": ("1. Drain no-op jobs, one worker process", "jobs/s", True,
                        [("noop_drain", "per_s", "drain")]),
    "bench-cpu.png": ("1. Worker and Redis CPU per no-op job", "CPU µs per job", True,
                      [("noop_drain", "cpu_us_per_job", "worker"),
                       ("noop_drain", "redis_cpu_us_per_job", "redis-server")]),
    "bench-sleep.png": ("2. 10 ms sleeping jobs", "jobs/s", True,
                        [("sleep10_c50", "per_s", "concurrency 50"),
                         ("sleep10_cmax", "per_s", "highest concurrency")]),
    "bench-latency.png": ("3. Pickup latency on an idle worker", "ms", True,
                          [("pickup_latency", "p50_ms", "p50"),
                           ("pickup_latency", "p99_ms", "p99")]),
    "bench-async1s.png": ("4. 10,000 one-second jobs in one process", "% of ideal", False,
                          [("async_1s_10k", "pct_of_ideal", "throughput vs ideal")]),
}


def draw(table: dict[str, Any], path: Path, title: str, ylabel: str, log: bool,
         series: list[tuple[str, str, str]]) -> bool:
    peers = [p for p in PEERS if any(table.get(w, {}).get(p, {}).get(m) for w, m, _ in series)]
    if not peers:
        return False
    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=110)
    width = 0.8 / len(series)
    for i, (workload, metric, label) in enumerate(series):
        values = [table.get(workload, {}).get(p, {}).get(metric) or 0 for p in peers]
        xs = [x + i * width - 0.4 + width / 2 for x in range(len(peers))]
        bars = ax.bar(xs, values, width, label=label)
        ax.bar_label(bars, labels=[_label(v) for v in values], fontsize=7, padding=1)
    ax.set_xticks(range(len(peers)), peers)
    ax.set_ylabel(ylabel + (" (log scale)" if log else ""))
    if log:
        ax.set_yscale("log")
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _label(v: float) -> str:
    if not v:
        return ""
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2f}"


def main() -> None:
    summary = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    drawn = [name for name, (title, ylabel, log, series) in FIGURES.items()
             if draw(summary["table"], out / name, title, ylabel, log, series)]
    print(json.dumps(drawn))


if __name__ == "__main__":
    main()
