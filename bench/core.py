"""Core benchmarks (issue 2): enqueue rates, no-op drain rate of one worker process, pickup latency.

    .venv/bin/python bench/core.py [--jobs 100000] [--repeat 3] [--only enqueue]
                                   [--out bench/results/core.jsonl]

Starts its own Redis-compatible server (no persistence) on a free port, so nothing else shares
it. Each figure is the median of --repeat runs. Results are appended as JSON lines, with the
load average when the run started (the machine may be shared).

Next to Conveyor's enqueue rates it measures the floors they are bounded by, with redis-py on
the broker's own connection settings (issue 8, "single enqueue bounded by one round trip"):
``ping_per_s`` (one round trip), ``evalsha_empty_per_s`` (EVALSHA of ``return 1`` with the
arguments of a single enqueue: the round trip of any script call of that size),
``script_single_per_s`` (the enqueue script itself on prebuilt arguments: a single enqueue
without the client's work), ``script_bulk_per_s`` (the enqueue script on prebuilt chunks,
pipelined: the bulk path without the client's work) and ``lpush_bulk_per_s`` (one variadic LPUSH
per 1,000 prebuilt payloads, no status records: what Sidekiq's ``push_bulk`` does). ``--only
enqueue`` skips the drain and latency measurements.
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
from collections.abc import Callable
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from conveyor import App, EnqueueRequest  # noqa: E402
from conveyor.broker.redis import ENQUEUE_CHUNK  # noqa: E402
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


def _rate(n: int, fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return n / (time.perf_counter() - started)


def floors(app: App, n_single: int, n_bulk: int) -> dict[str, float]:
    """The round-trip and Redis-side floors of the enqueue rates (see the module docstring)."""
    broker = app.client.sync
    r = broker.redis  # the broker's connection settings (timeouts, health checks)
    # distinct jobs, as in the real runs: a status record written twice costs Redis less
    items = [app.client.build(EnqueueRequest("noop", args=[j])) for j in range(n_bulk)]
    singles = [broker._args.enqueue([it]) for it in items[:n_single]]
    empty = r.script_load("return 1")
    sha = broker.scripts["enqueue"].sha
    chunks = [broker._args.enqueue(items[i : i + ENQUEUE_CHUNK])
              for i in range(0, n_bulk, ENQUEUE_CHUNK)]
    raws = [it.raw for it in items]

    def script_bulk() -> None:
        per_call = BATCH // ENQUEUE_CHUNK
        for i in range(0, len(chunks), per_call):
            pipe = r.pipeline(transaction=False)
            for ckeys, cargs in chunks[i : i + per_call]:
                pipe.execute_command("EVALSHA", sha, len(ckeys), *ckeys, *cargs)
            pipe.execute()

    def lpush_bulk() -> None:
        for i in range(0, n_bulk, BATCH):
            r.lpush("queue:floor", *raws[i : i + BATCH])

    out = {
        "ping_per_s": _rate(n_single, lambda: [r.ping() for _ in range(n_single)]),
        "evalsha_empty_per_s": _rate(n_single, lambda: [r.evalsha(empty, len(k), *k, *a)
                                                        for k, a in singles]),
        "script_single_per_s": _rate(n_single, lambda: [r.evalsha(sha, len(k), *k, *a)
                                                        for k, a in singles]),
    }
    r.flushall()
    out["script_bulk_per_s"] = _rate(n_bulk, script_bulk)
    r.flushall()
    out["lpush_bulk_per_s"] = _rate(n_bulk, lpush_bulk)
    r.flushall()
    return out


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


def _commit() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)
    return out.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--only", choices=["all", "enqueue"], default="all",
                    help="enqueue: only the enqueue rates and their floors")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "core.jsonl"))
    args = ap.parse_args()
    with RedisServer() as server:
        url = server.url
        r = redis.Redis.from_url(url)
        app = App(settings=Settings(redis_url=url))
        results: dict[str, object] = {"machine": machine(), "jobs": args.jobs,
                                      "when": time.strftime("%Y-%m-%d %H:%M:%S"),
                                      "loadavg": os.getloadavg()[0], "only": args.only,
                                      "commit": _commit()}
        runs: dict[str, list[float]] = {}
        n_single = min(args.jobs, 10_000)
        for _ in range(args.repeat):
            r.flushall()
            runs.setdefault("bulk_enqueue_per_s", []).append(bulk_enqueue(app, args.jobs))
            r.flushall()
            runs.setdefault("single_enqueue_per_s", []).append(single_enqueue(app, n_single))
            r.flushall()
            for key, value in floors(app, n_single, args.jobs).items():
                runs.setdefault(key, []).append(value)
            if args.only == "all":
                runs.setdefault("drain_async_noop_per_s", []).append(
                    drain(url, r, app, args.jobs, "noop", args.concurrency))
                runs.setdefault("drain_sync_noop_per_s", []).append(
                    drain(url, r, app, args.jobs, "noop_sync", args.concurrency))
        for key, values in runs.items():
            results[key] = round(statistics.median(values))
            results[key + "_runs"] = [round(v) for v in values]
        single = statistics.median(runs["single_enqueue_per_s"])
        results["single_over_ping"] = round(single / statistics.median(runs["ping_per_s"]), 3)
        results["single_over_evalsha_empty"] = round(
            single / statistics.median(runs["evalsha_empty_per_s"]), 3)
        if args.only == "all":
            results["pickup_latency"] = pickup(url, r, app, 500)
        app.close()
        r.close()
    print(json.dumps(results, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(results) + "\n")


if __name__ == "__main__":
    main()
