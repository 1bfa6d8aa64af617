"""Copy-on-write under the fork executor: shared vs private memory for a 500 MB read-only table.

    python bench/executors/cow.py            # 500 MB tables (needs about 2 GB free)
    python bench/executors/cow.py --mb 50    # a quick run

The table is built in the worker before the executor starts, so the zygote and every task's
process inherit it. Each task reads some or all of it and reports its own memory from
/proc/self/smaps_rollup: Shared is still one copy for everyone, Private was copied into that
process. Two tables of the same size: one ``bytes`` buffer (one object: reading it touches one
reference count) and a list of (int, float) row tuples (millions of objects: reading a row
writes its reference count, which copies the page it lives on). Also reports the fork cost
(a no-op task's duration) with the table loaded and without.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from conveyor.executors import Task, create_executor

ROW_BYTES = 120  # measured: a 2-tuple of an int and a float, plus its list slot
TABLE: Any = None
LATENCY_SAMPLES = 20


def smaps_mb() -> dict[str, float]:
    fields: dict[str, int] = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1])
    mb = {k: v / 1024 for k, v in fields.items()}
    return {"rss": mb.get("Rss", 0), "shared": mb.get("Shared_Clean", 0) + mb.get(
        "Shared_Dirty", 0), "private": mb.get("Private_Clean", 0) + mb.get("Private_Dirty", 0)}


def scan(fraction: float) -> dict[str, float]:
    """Read ``fraction`` of the table, then report this process's memory."""
    began = time.perf_counter()
    if isinstance(TABLE, bytes):
        step = 4096
        stop = int(len(TABLE) * fraction)
        checksum = sum(TABLE[i] for i in range(0, stop, step))
    else:
        stop = int(len(TABLE) * fraction)
        checksum = sum(row[0] for row in TABLE[:stop]) if fraction < 1 else sum(
            row[0] for row in TABLE)
    return {"checksum": checksum, "scan_s": time.perf_counter() - began, **smaps_mb()}


def noop() -> None:
    return None


async def measure(label: str, fractions: list[float]) -> list[str]:
    ex = create_executor("fork", {"Scan": scan, "Noop": noop}, 1)
    await ex.start()
    rows = []
    try:
        durations = []
        for _ in range(LATENCY_SAMPLES):
            outcome = await ex.run(Task("Noop"))
            durations.append(outcome.duration_s)
        fork_ms = statistics.median(durations) * 1000
        for fraction in fractions:
            outcome = await ex.run(Task("Scan", [fraction]))
            assert outcome.ok, outcome.message
            m = outcome.value
            rows.append(f"| {label} | {fraction:.0%} | {m['rss']:,.0f} | {m['shared']:,.0f} | "
                        f"{m['private']:,.0f} | {m['scan_s']:.2f} | {fork_ms:.1f} |")
        if not fractions:
            rows.append(f"| {label} | - | - | - | - | - | {fork_ms:.1f} |")
    finally:
        await ex.stop()
    return rows


def main() -> None:
    global TABLE
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=500, help="table size in MB")
    args = parser.parse_args()
    header = ["| table | read by the task | task RSS (MB) | shared (MB) | private (MB) | "
              "scan (s) | fork per task (ms, median) |", "|---|---|---|---|---|---|---|"]
    lines = list(header)
    TABLE = None
    lines += asyncio.run(measure("none (baseline)", []))  # fork cost without a table
    TABLE = b"\x01" * (args.mb * 1024 * 1024)
    lines += asyncio.run(measure(f"bytes, {args.mb} MB", [1.0]))
    TABLE = [(i, float(i)) for i in range(args.mb * 1024 * 1024 // ROW_BYTES)]
    lines += asyncio.run(measure(f"list of {len(TABLE):,} tuples, ~{args.mb} MB",
                                 [0.01, 1.0]))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
