"""Core benchmarks (issue 2): enqueue rates, no-op drain rate of one worker process, pickup latency.

    .venv/bin/python bench/core.py [--jobs 100000] [--out bench/results/core.jsonl]

Starts its own Redis-compatible server (no persistence) on a free port, so nothing else shares
it. Each figure is the median of --repeat runs. Results are appended as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from conveyor import App, EnqueueRequest  # noqa: E402
from conveyor.settings import Settings  # noqa: E402
from redis_server import RedisServer  # noqa: E402

BATCH = 1000


def machine() -> dict[str, object]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}


def bulk_enqueue(app: App, n: int, name: str = "noop") -> float:
    started = time.perf_counter()
    for i in range(0, n, BATCH):
        app.enqueue_many([EnqueueRequest(name, args=[j]) for j in range(i, min(n, i + BATCH))])
    return n / (time.perf_counter() - started)


def single_enqueue(app: App, n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        app.enqueue("noop", args=[i])
    return n / (time.perf_counter() - started)


def start_worker(url: str, concurrency: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CONVEYOR_REDIS_URL": url, "PYTHONPATH": str(ROOT / "bench")}
    return subprocess.Popen([sys.executable, "-m", "conveyor", "worker", "--app", "bench_app:app",
                             "-q", "default", "-c", str(concurrency)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def drain(url: str, r: redis.Redis, app: App, n: int, name: str, concurrency: int) -> float:
    r.flushall()
    bulk_enqueue(app, n, name)
    worker = start_worker(url, concurrency)
    try:
        while r.llen("queue:default") == n:  # the clock starts at the first fetch
            time.sleep(0.0005)
        started = time.perf_counter()
        while True:
            if r.llen("queue:default") == 0 and not any(
                    r.hlen(k) for k in r.scan_iter("conveyor:inflight:*")):
                break
            time.sleep(0.002)
        return n / (time.perf_counter() - started)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)


def pickup(url: str, r: redis.Redis, app: App, samples: int) -> dict[str, float]:
    r.flushall()
    worker = start_worker(url, 10)
    lat: list[float] = []
    try:
        h = app.enqueue("stamp", args=[time.time()])
        h.result(timeout=30)  # worker is up and idle
        for _ in range(samples):
            time.sleep(0.01)  # let the worker go idle (blocked on Redis) again
            lat.append(app.enqueue("stamp", args=[time.time()]).result(timeout=10) * 1000)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    lat.sort()
    return {"p50_ms": round(lat[len(lat) // 2], 3), "p99_ms": round(lat[int(len(lat) * 0.99)], 3),
            "max_ms": round(lat[-1], 3), "samples": samples}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "core.jsonl"))
    args = ap.parse_args()
    with RedisServer() as server:
        url = server.url
        r = redis.Redis.from_url(url)
        app = App(settings=Settings(redis_url=url))
        results: dict[str, object] = {"machine": machine(), "jobs": args.jobs,
                                      "when": time.strftime("%Y-%m-%d %H:%M:%S")}
        runs: dict[str, list[float]] = {"bulk_enqueue_per_s": [], "single_enqueue_per_s": [],
                                        "drain_async_noop_per_s": [], "drain_sync_noop_per_s": []}
        for _ in range(args.repeat):
            r.flushall()
            runs["bulk_enqueue_per_s"].append(bulk_enqueue(app, args.jobs))
            r.flushall()
            runs["single_enqueue_per_s"].append(single_enqueue(app, min(args.jobs, 10_000)))
            runs["drain_async_noop_per_s"].append(drain(url, r, app, args.jobs, "noop",
                                                        args.concurrency))
            runs["drain_sync_noop_per_s"].append(drain(url, r, app, args.jobs, "noop_sync",
                                                       args.concurrency))
        for key, values in runs.items():
            results[key] = round(statistics.median(values))
            results[key + "_runs"] = [round(v) for v in values]
        results["pickup_latency"] = pickup(url, r, app, 500)
        app.close()
        r.close()
    print(json.dumps(results, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(results) + "\n")


if __name__ == "__main__":
    main()
