"""Where a Conveyor no-op job's time goes: one worker draining plain no-op jobs, optionally under
py-spy, with the per-job costs the side-by-side run cannot separate.

    .venv/bin/python bench/peers/profile.py --jobs 30000 -c 10
    .venv/bin/pip install py-spy && .venv/bin/python bench/peers/profile.py -c 10 --py-spy

The jobs are ``bench/bench_app.py``'s ``noop`` (no counter, so nothing but Conveyor runs). It
prints jobs/s, the worker's and Redis's CPU per job, Redis commands per job, and Redis reads per
job (``total_reads_processed``: one per request the server read, so about one per round trip).
With ``--py-spy`` it also splits the event loop's busy samples into the parts of the hot path.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]

import psutil  # noqa: E402
import redis  # noqa: E402

from conveyor import App, EnqueueRequest  # noqa: E402
from conveyor.settings import Settings  # noqa: E402
from redis_server import RedisServer  # noqa: E402

POLL_S = 0.005
SAMPLE_RATE_HZ = 250
# first matching frame (from the leaf up) names the part of the hot path a sample belongs to
PARTS = (("redis round trips (fetch, ack)", ("AsyncBroker.",)),
         ("parsing and starting jobs", ("Worker._start",)),
         ("running jobs (executor, context, outcome, ack bookkeeping)",
          ("Worker._admit_and_execute", "Worker._execute")),
         ("fetch loop bookkeeping", ("Worker._fetch_loop",)))


def counters(r: redis.Redis) -> tuple[int, int]:
    stats = r.info("commandstats")
    cmds = sum(v["calls"] for k, v in stats.items()
               if k.split("_", 1)[1] not in ("info", "llen", "scan", "hlen"))
    return cmds, int(r.info("stats")["total_reads_processed"])


def drain(url: str, r: redis.Redis, redis_pid: int, args: argparse.Namespace) -> dict[str, float]:
    app = App(settings=Settings(redis_url=url))
    for i in range(0, args.jobs, 1000):
        app.enqueue_many([EnqueueRequest("noop", args=[j])
                          for j in range(i, min(args.jobs, i + 1000))])
    argv = [sys.executable, "-m", "conveyor", "worker", "--app", "bench_app:app", "-q", "default",
            "-c", str(args.concurrency)]
    if args.py_spy:
        argv = [shutil.which("py-spy") or "py-spy", "record", "-r", str(SAMPLE_RATE_HZ), "-o",
                str(args.py_spy), "--format", "raw", "--", *argv]
    path = os.pathsep.join(filter(None, [str(ROOT / "bench"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "CONVEYOR_REDIS_URL": url, "PYTHONPATH": path}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while r.llen("queue:default") == args.jobs:  # the window opens at the first fetch
            time.sleep(POLL_S)
        worker = psutil.Process(proc.pid).children()[0] if args.py_spy else psutil.Process(proc.pid)
        redis_proc = psutil.Process(redis_pid)
        before = (sum(worker.cpu_times()[:2]), sum(redis_proc.cpu_times()[:2]), *counters(r))
        started = time.perf_counter()
        while r.llen("queue:default") or any(r.hlen(k) for k in r.scan_iter("conveyor:inflight:*")):
            time.sleep(POLL_S)
        took = time.perf_counter() - started
        after = (sum(worker.cpu_times()[:2]), sum(redis_proc.cpu_times()[:2]), *counters(r))
        worker.send_signal(signal.SIGTERM)
    finally:
        proc.wait(60)
    n = args.jobs
    return {"jobs_per_s": n / took, "worker_cpu_us": (after[0] - before[0]) / n * 1e6,
            "redis_cpu_us": (after[1] - before[1]) / n * 1e6,
            "commands": (after[2] - before[2]) / n, "reads": (after[3] - before[3]) / n}


def parts(raw: Path) -> dict[str, float]:
    """Shares of the event loop's busy samples (idle = the loop waiting in epoll)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = [re.sub(r" \(.*", "", f) for f in stack.split(";")]
        if "run_worker" not in frames or frames[-1] == "run_worker":
            continue  # another thread, or the loop idle
        if any("_find_and_load" in f for f in frames):
            continue  # start-up imports
        part = next((name for name, marks in PARTS
                     if any(f.startswith(m) for f in reversed(frames) for m in marks)), "other")
        counts[part] += int(n)
    total = sum(counts.values()) or 1
    return {k: 100 * v / total for k, v in counts.most_common()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=30_000)
    ap.add_argument("-c", "--concurrency", type=int, default=10)
    ap.add_argument("--py-spy", nargs="?", type=Path, const=Path(tempfile.mktemp(".txt")),
                    help="record the worker with py-spy (raw stacks to this file)")
    args = ap.parse_args()
    with RedisServer() as server:
        r = redis.Redis.from_url(server.url)
        out = drain(server.url, r, server.pid or 0, args)
        r.close()
    print(f"{out['jobs_per_s']:,.0f} jobs/s, worker CPU {out['worker_cpu_us']:.1f} us/job, "
          f"Redis CPU {out['redis_cpu_us']:.1f} us/job, {out['commands']:.2f} Redis commands/job, "
          f"{out['reads']:.3f} Redis reads/job, load {os.getloadavg()[0]:.2f}")
    if args.py_spy:
        for name, share in parts(args.py_spy).items():
            print(f"  {share:5.1f}%  {name}")
        print(f"raw stacks: {args.py_spy}")


if __name__ == "__main__":
    main()
