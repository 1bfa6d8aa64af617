"""Pipeline throughput and per-item overhead per strategy, against pypeln, mpire and
concurrent.futures doing the same work in the same run.

Run (peers live in their own venv, not in the project's dependencies):

    python3 -m venv /tmp/venv-bench
    /tmp/venv-bench/bin/pip install pypeln==0.4.9 mpire==2.10.2 -e /work/main
    /tmp/venv-bench/bin/python bench/pipeline/bench_pipeline.py [--quick] [--json out.json]

Workloads (one stage doing the work, fed from an iterable, outputs counted):

* ``small``: the identity on small ints: pure engine overhead, reported in µs per item.
* ``hop``: a chain of 1 and of 6 inline identity stages; (t6 - t1) / 5 is the cost of one
  in-process stage hop per item.
* ``sleep1`` / ``sleep10``: 1 ms / 10 ms of waiting per item (I/O-like) with concurrency 8
  (inline: 1): overhead per item = elapsed * concurrency / n - work.
* ``cpu``: about 1 ms of pure-Python CPU per item on processes=2 (the cores this machine has).

The matrix runs ``--repeat`` times (default 3), each pass over every row in turn, so the runs
of one row are spread over the whole session and a burst of load from other work on a shared
machine hits every runner alike rather than a few rows. The table reports each row's median
run; the JSON keeps every run's seconds, the best, and the 1-minute load average of each pass
(read figures taken under load as orders of magnitude).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from conveyor.pipeline import Pipeline

CONCURRENCY = 8
CPU_ROUNDS = 20_000  # about 1 ms of CPU on this machine


def ident(x: Any) -> Any:
    return x


def sleeper(ms: float) -> Callable[[Any], Any]:
    def work(x: Any) -> Any:
        time.sleep(ms / 1000)
        return x

    return work


def asleeper(ms: float) -> Callable[[Any], Any]:
    async def work(x: Any) -> Any:
        await asyncio.sleep(ms / 1000)
        return x

    return work


def cpu(x: Any) -> Any:
    total = 0
    for i in range(CPU_ROUNDS):
        total += i * i
    return x


def timed(fn: Callable[[], int], n: int, repeat: int) -> list[float]:
    """Seconds of each of ``repeat`` runs."""
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        got = fn()
        runs.append(time.perf_counter() - started)
        assert got == n, (got, n)
    return runs


class Row(NamedTuple):
    workload: str
    runner: str
    n: int
    thunk: Callable[[], int]
    work_s: float  # per item
    concurrency: int = CONCURRENCY


# --- conveyor -------------------------------------------------------------------------------------
def conveyor_run(fn: Callable[..., Any], n: int, stages: int = 1, **strategy: Any) -> int:
    pipe = Pipeline("bench")
    for i in range(stages):
        pipe.processor(fn, name=f"s{i}", **strategy)
    return pipe.run(range(n)).stats.outputs


# --- peers ----------------------------------------------------------------------------------------
def futures_threads(fn: Callable[..., Any], n: int) -> int:
    with cf.ThreadPoolExecutor(CONCURRENCY) as pool:
        return sum(1 for _ in pool.map(fn, range(n)))


def futures_processes(fn: Callable[..., Any], n: int, workers: int, chunk: int) -> int:
    with cf.ProcessPoolExecutor(workers) as pool:
        return sum(1 for _ in pool.map(fn, range(n), chunksize=chunk))


def pypeln_run(kind: str, fn: Callable[..., Any], n: int, workers: int) -> int:
    import pypeln as pl

    module = getattr(pl, kind)
    return sum(1 for _ in module.map(fn, range(n), workers=workers, maxsize=1000))


def mpire_run(
    fn: Callable[..., Any], n: int, workers: int, start: str = "fork", chunk: int | None = None
) -> int:
    from mpire import WorkerPool

    with WorkerPool(n_jobs=workers, start_method=start) as pool:
        return sum(1 for _ in pool.imap_unordered(fn, range(n), chunk_size=chunk))


def asyncio_gather(fn: Callable[..., Any], n: int) -> int:
    async def main() -> int:
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one(x: int) -> Any:
            async with sem:
                return await fn(x)

        return len(await asyncio.gather(*(one(x) for x in range(n))))

    return asyncio.run(main())


# --- the matrix -----------------------------------------------------------------------------------
def scenarios(quick: bool) -> list[Row]:
    """Every (workload, runner) row."""
    small = 50_000 if quick else 200_000
    small_proc = 50_000 if quick else 200_000
    s1, s10, ncpu = (400, 80, 400) if quick else (2000, 400, 2000)
    rows: list[tuple[Any, ...]] = [
        ("small", "conveyor inline", small, lambda: conveyor_run(ident, small), 0.0),
        (
            "small",
            "conveyor threads=8",
            small,
            lambda: conveyor_run(ident, small, threads=CONCURRENCY),
            0.0,
        ),
        (
            "small",
            "conveyor asyncio=8",
            small,
            lambda: conveyor_run(ident, small, asyncio=CONCURRENCY),
            0.0,
        ),
        (
            "small",
            "conveyor processes=2 (chunked)",
            small_proc,
            lambda: conveyor_run(ident, small_proc, processes=2),
            0.0,
        ),
        (
            "small",
            "conveyor forks=2 (chunked)",
            small_proc // 4,
            lambda: conveyor_run(ident, small_proc // 4, forks=2),
            0.0,
        ),
        ("small", "futures ThreadPool(8).map", small, lambda: futures_threads(ident, small), 0.0),
        (
            "small",
            "futures ProcessPool(2).map chunk=256",
            small_proc,
            lambda: futures_processes(ident, small_proc, 2, 256),
            0.0,
        ),
        (
            "small",
            "pypeln thread.map workers=8",
            small,
            lambda: pypeln_run("thread", ident, small, CONCURRENCY),
            0.0,
        ),
        (
            "small",
            "pypeln process.map workers=2",
            small_proc // 4,
            lambda: pypeln_run("process", ident, small_proc // 4, 2),
            0.0,
        ),
        (
            "small",
            "mpire WorkerPool(2) chunk=256",
            small_proc,
            lambda: mpire_run(ident, small_proc, 2, chunk=256),
            0.0,
        ),
        ("hop", "conveyor inline x1", small, lambda: conveyor_run(ident, small, 1), 0.0),
        ("hop", "conveyor inline x6", small, lambda: conveyor_run(ident, small, 6), 0.0),
    ]
    for label, n, ms in (("sleep1", s1, 1.0), ("sleep10", s10, 10.0)):
        rows += [
            (
                label,
                "conveyor inline",
                n,
                lambda n=n, ms=ms: conveyor_run(sleeper(ms), n),
                ms / 1000,
                1,
            ),
            (
                label,
                "conveyor threads=8",
                n,
                lambda n=n, ms=ms: conveyor_run(sleeper(ms), n, threads=CONCURRENCY),
                ms / 1000,
            ),
            (
                label,
                "conveyor asyncio=8",
                n,
                lambda n=n, ms=ms: conveyor_run(asleeper(ms), n, asyncio=CONCURRENCY),
                ms / 1000,
            ),
            (
                label,
                "conveyor processes=8",
                n,
                lambda n=n, ms=ms: conveyor_run(sleeper(ms), n, processes=CONCURRENCY),
                ms / 1000,
            ),
            (
                label,
                "conveyor forks=8",
                n,
                lambda n=n, ms=ms: conveyor_run(sleeper(ms), n, forks=CONCURRENCY),
                ms / 1000,
            ),
            (
                label,
                "futures ThreadPool(8).map",
                n,
                lambda n=n, ms=ms: futures_threads(sleeper(ms), n),
                ms / 1000,
            ),
            (
                label,
                "asyncio gather, semaphore 8",
                n,
                lambda n=n, ms=ms: asyncio_gather(asleeper(ms), n),
                ms / 1000,
            ),
            (
                label,
                "pypeln thread.map workers=8",
                n,
                lambda n=n, ms=ms: pypeln_run("thread", sleeper(ms), n, CONCURRENCY),
                ms / 1000,
            ),
            (
                label,
                "pypeln task.map workers=8",
                n,
                lambda n=n, ms=ms: pypeln_run("task", asleeper(ms), n, CONCURRENCY),
                ms / 1000,
            ),
            (
                label,
                "mpire WorkerPool(8, threading)",
                n,
                lambda n=n, ms=ms: mpire_run(sleeper(ms), n, CONCURRENCY, "threading"),
                ms / 1000,
            ),
        ]
    rows += [
        ("cpu", "serial (one core)", ncpu, lambda: sum(1 for x in range(ncpu) if cpu(x) >= 0), 0.0),
        ("cpu", "conveyor processes=2", ncpu, lambda: conveyor_run(cpu, ncpu, processes=2), 0.0),
        ("cpu", "conveyor forks=2", ncpu, lambda: conveyor_run(cpu, ncpu, forks=2), 0.0),
        (
            "cpu",
            "futures ProcessPool(2).map chunk=16",
            ncpu,
            lambda: futures_processes(cpu, ncpu, 2, 16),
            0.0,
        ),
        (
            "cpu",
            "pypeln process.map workers=2",
            ncpu,
            lambda: pypeln_run("process", cpu, ncpu, 2),
            0.0,
        ),
        ("cpu", "mpire WorkerPool(2)", ncpu, lambda: mpire_run(cpu, ncpu, 2), 0.0),
    ]
    return [Row(*row) for row in rows]


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=os.path.dirname(os.path.abspath(__file__)),
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller n, for a smoke run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="", help="run only workloads containing this text")
    parser.add_argument("--json", default="", help="also write the results to this file")
    args = parser.parse_args()
    machine = (
        f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs available, "
        f"Python {platform.python_version()}, {platform.platform()}"
    )
    head = commit()  # taken before the run: a shared working tree may get commits meanwhile
    print(f"# {machine}; commit {head}; median of {args.repeat}")
    print(
        f"{'workload':9} {'runner':42} {'n':>8} {'items/s':>12} {'µs/item':>9} {'overhead':>9}"
        f" {'best it/s':>12}"
    )
    rows = [r for r in scenarios(args.quick) if not args.only or args.only in r.workload]
    runs: dict[int, list[float]] = {i: [] for i in range(len(rows))}
    loads: list[float] = []
    for done in range(args.repeat):
        for i, row in enumerate(rows):
            runs[i] += timed(row.thunk, row.n, 1)
        loads.append(os.getloadavg()[0])
        print(f"# pass {done + 1} of {args.repeat} done, load average {loads[-1]:.1f}", flush=True)
    results = []
    hop: dict[str, float] = {}
    for i, row in enumerate(rows):
        took = statistics.median(runs[i])
        per_item_us = took / row.n * 1e6
        # with work, what concurrency does not hide: elapsed * concurrency / n - work
        overhead_us = (
            (took * row.concurrency / row.n - row.work_s) * 1e6 if row.work_s else per_item_us
        )
        if row.workload == "hop":
            hop[row.runner] = took / row.n
        results.append(
            {
                "workload": row.workload,
                "runner": row.runner,
                "n": row.n,
                "concurrency": row.concurrency,
                "seconds": took,
                "runs_s": runs[i],
                "best_s": min(runs[i]),
                "items_per_s": row.n / took,
                "us_per_item": per_item_us,
                "overhead_us": overhead_us,
            }
        )
        print(
            f"{row.workload:9} {row.runner:42} {row.n:>8} {row.n / took:>12,.0f} "
            f"{per_item_us:>9.2f} {overhead_us:>9.2f} {row.n / min(runs[i]):>12,.0f}",
            flush=True,
        )
    if len(hop) == 2:
        per_hop = (hop["conveyor inline x6"] - hop["conveyor inline x1"]) / 5 * 1e6
        print(f"# one in-process stage hop: {per_hop:.2f} µs per item")
        results.append({"workload": "hop", "runner": "per hop", "us_per_item": per_hop})
    if args.json:
        report = {
            "machine": machine,
            "commit": head,
            "repeat": args.repeat,
            "statistic": "median",
            "load_average_per_pass": loads,
            "argv": sys.argv,
            "results": results,
        }
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
