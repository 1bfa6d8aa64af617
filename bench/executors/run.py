"""Executor benchmarks: throughput, latency overhead and memory of every executor.

    python bench/executors/run.py            # full run (about two minutes on 2 cores)
    python bench/executors/run.py --quick    # smaller counts, for a smoke test
    python bench/executors/run.py --only process,fork
    python bench/executors/run.py --repeat 3 # best of 3 per figure, on a busy machine

Per executor: no-op jobs/s (as many in flight as the executor's capacity), 10 ms sleeping jobs/s
at high concurrency (and the ideal, capacity / 10 ms), the overhead of one call measured
sequentially against calling the function directly, and the peak memory of the worker plus its
children and sidecar (summed PSS, so copy-on-write pages count once). Then the asyncio promise:
10,000 concurrent 1-second sleeping jobs in one process, as one burst and as a stream kept
10,000 deep. Results print as a Markdown table (copied into RESULTS.md by hand, with the
machine and its load average, since other work on the machine changes every figure).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from bench_jobs import ASYNC, SYNC, noop  # noqa: E402

from conveyor.executors import Executor, Task, create_executor  # noqa: E402

RSS_SAMPLE_S = 0.05
MB = 1024 * 1024


@dataclass
class Setup:
    name: str
    kind: str
    functions: dict[str, Callable[..., Any]]
    noop_capacity: int
    sleep_capacity: int
    options: Callable[[], dict[str, Any]] = dict
    noop_jobs: int = 20_000  # fewer for the slow ones, so that a run stays a few minutes


def _python_sidecar() -> dict[str, Any]:
    return {"command": [sys.executable, "-m", "conveyor.sidecar", "--app", "bench_jobs:app",
                        "--port", "{port}", "--concurrency", "1000"],
            "env": {"PYTHONPATH": str(HERE)}}


def _ruby_sidecar() -> dict[str, Any]:
    return {"command": ["ruby", str(ROOT / "sidecars/ruby/bin/conveyor-sidecar"), "--port",
                        "{port}", "--require", str(HERE / "ruby_jobs.rb"), "--threads", "300"]}


SETUPS = [
    Setup("asyncio", "asyncio", ASYNC, 1000, 1000),
    Setup("thread", "thread", SYNC, 8, 200),
    Setup("process", "process", SYNC, 2, 32),
    Setup("fork", "fork", SYNC, 4, 32, noop_jobs=1_000),
    Setup("http-python", "http", {}, 32, 200, _python_sidecar, noop_jobs=5_000),
    Setup("http-ruby", "http", {}, 32, 200, _ruby_sidecar, noop_jobs=5_000),
]


def pss_bytes(pid: int) -> int:
    """Proportional set size: shared pages divided among the processes sharing them, so the
    sum over a process tree counts copy-on-write memory once (RSS would count it per child)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class PeakRss:
    """Samples the memory (PSS) of this process and all its descendants in a thread."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        me = psutil.Process()
        total = pss_bytes(me.pid)
        for child in me.children(recursive=True):
            total += pss_bytes(child.pid)
        return total

    def _run(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_S):
            self.peak = max(self.peak, self._sample())

    def __enter__(self) -> PeakRss:
        self.peak = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def _throughput(ex: Executor, name: str, count: int) -> float:
    began = time.perf_counter()
    outcomes = await asyncio.gather(*(ex.run(Task(name)) for _ in range(count)))
    elapsed = time.perf_counter() - began
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} {name} jobs failed: {failed[0].message}")
    return count / elapsed


async def _latency_us(ex: Executor, count: int) -> float:
    began = time.perf_counter()
    for _ in range(count):
        await ex.run(Task("Noop"))
    return (time.perf_counter() - began) / count * 1e6


def _direct_us(count: int) -> float:
    began = time.perf_counter()
    for _ in range(count):
        noop()
    return (time.perf_counter() - began) / count * 1e6


async def bench_one(setup: Setup, quick: bool) -> dict[str, Any]:
    scale = 0.1 if quick else 1.0
    row: dict[str, Any] = {"executor": setup.name}
    with PeakRss() as rss:
        ex = create_executor(setup.kind, setup.functions, setup.noop_capacity, **setup.options())
        await ex.start()
        try:
            await _throughput(ex, "Noop", 200)  # warm up pools and connections
            row["noop_per_s"] = await _throughput(ex, "Noop", int(setup.noop_jobs * scale))
            row["latency_us"] = await _latency_us(ex, int(setup.noop_jobs / 10 * scale))
        finally:
            await ex.stop(5)
        ex = create_executor(setup.kind, setup.functions, setup.sleep_capacity,
                             **setup.options())
        await ex.start()
        try:
            count = int(setup.sleep_capacity * 20 * scale) or setup.sleep_capacity
            row["sleep_per_s"] = await _throughput(ex, "Sleep10", count)
            row["sleep_ideal_per_s"] = setup.sleep_capacity / 0.01
        finally:
            await ex.stop(5)
    row["peak_rss_mb"] = rss.peak / MB
    row["capacity"] = f"{setup.noop_capacity} / {setup.sleep_capacity}"
    return row


async def bench_asyncio_10k(count: int) -> dict[str, Any]:
    with PeakRss() as rss:
        ex = create_executor("asyncio", ASYNC, count)
        await ex.start()
        cpu, began = time.process_time(), time.perf_counter()
        outcomes = await asyncio.gather(*(ex.run(Task("Sleep", [1.0])) for _ in range(count)))
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
        await ex.stop(0)
    assert all(o.ok for o in outcomes)
    return {"jobs": count, "elapsed_s": elapsed, "efficiency": 1.0 / elapsed,
            "cpu_us": cpu / count * 1e6, "peak_rss_mb": rss.peak / MB}


async def bench_asyncio_sustained(concurrency: int, total: int) -> dict[str, Any]:
    """A stream of 1 s jobs kept ``concurrency`` deep, as the worker feeds its executors (it
    fetches only as many jobs as it has free slots). Ideal: ``concurrency`` jobs per second."""
    with PeakRss() as rss:
        ex = create_executor("asyncio", ASYNC, concurrency)
        await ex.start()
        slots = asyncio.Semaphore(concurrency)
        running: set[asyncio.Task[Any]] = set()
        cpu, began = time.process_time(), time.perf_counter()
        for _ in range(total):
            await slots.acquire()
            job = asyncio.create_task(ex.run(Task("Sleep", [1.0])))
            running.add(job)
            job.add_done_callback(lambda j: (running.discard(j), slots.release()))
        while running:
            await asyncio.wait(list(running))
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
        await ex.stop(0)
    ideal_s = total / concurrency
    return {"jobs": total, "elapsed_s": elapsed, "efficiency": ideal_s / elapsed,
            "per_s": total / elapsed, "cpu_us": cpu / total * 1e6, "peak_rss_mb": rss.peak / MB}


def best_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The best figure of each kind over repeated runs (interference only ever slows a run)."""
    best = dict(runs[0])
    for key in ("noop_per_s", "sleep_per_s"):
        best[key] = max(r[key] for r in runs)
    for key in ("latency_us", "peak_rss_mb"):
        best[key] = min(r[key] for r in runs)
    return best


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    loop = type(asyncio.get_event_loop_policy()).__module__.split(".")[0]
    return (f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu}), "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python "
            f"{platform.python_version()}, loop: {loop}, load average before: "
            f"{os.getloadavg()[0]:.2f}")


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| executor | capacity (no-op / sleep) | no-op jobs/s | 10 ms jobs/s (ideal) | "
             "overhead per call vs direct | peak memory, PSS (MB) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['executor']} | {r['capacity']} | {r['noop_per_s']:,.0f} | "
            f"{r['sleep_per_s']:,.0f} ({r['sleep_ideal_per_s']:,.0f}) | "
            f"{r['latency_us'] - r['direct_us']:,.1f} µs | {r['peak_rss_mb']:,.0f} |")
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (smoke test)")
    parser.add_argument("--only", default="", help="comma-separated executor names")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run each measurement this many times and keep the best")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    print(machine(), flush=True)
    rows = []
    direct = _direct_us(100_000)
    for setup in SETUPS:
        if only and setup.name not in only:
            continue
        if setup.name == "http-ruby" and shutil.which("ruby") is None:
            print("skipping http-ruby: ruby is not installed", flush=True)
            continue
        runs = [await bench_one(setup, args.quick) for _ in range(max(1, args.repeat))]
        row = best_of(runs)
        row["direct_us"] = direct
        rows.append(row)
        print(f"  {setup.name}: {row}", flush=True)
    print(table(rows))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if not only or "asyncio" in only:
        bursts = [await bench_asyncio_10k(1_000 if args.quick else 10_000)
                  for _ in range(max(1, args.repeat))]
        big = min(bursts, key=lambda b: b["elapsed_s"])
        print(f"\nasyncio, one burst of {big['jobs']:,} concurrent 1 s sleeps: all done in "
              f"{big['elapsed_s']:.3f} s ({big['efficiency']:.1%} of ideal), CPU "
              f"{big['cpu_us']:.0f} µs per job, peak RSS "
              f"{big['peak_rss_mb']:.0f} MB (one process: PSS = RSS)")
        depth = 1_000 if args.quick else 10_000
        flows = [await bench_asyncio_sustained(depth, depth * 5)
                 for _ in range(max(1, args.repeat))]
        flow = max(flows, key=lambda f: f["per_s"])
        print(f"asyncio, {flow['jobs']:,} 1 s sleeps kept {depth:,} deep: {flow['per_s']:,.0f} "
              f"jobs/s ({flow['efficiency']:.1%} of ideal), CPU {flow['cpu_us']:.0f} µs per job, "
              f"peak RSS {flow['peak_rss_mb']:.0f} MB")
    by = {r["executor"]: r for r in rows}
    if "thread" in by:
        for name in ("http-python", "http-ruby"):
            if name in by:
                extra = by[name]["latency_us"] - by["thread"]["latency_us"]
                print(f"{name} overhead per job vs thread: {extra / 1000:.2f} ms")


if __name__ == "__main__":
    asyncio.run(main())
