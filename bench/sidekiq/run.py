"""Sidekiq 6.4.1 against Conveyor on the same Redis, in the same run.

    python bench/sidekiq/run.py            # all scenarios, prints a Markdown table
    python bench/sidekiq/run.py --quick    # 10x fewer jobs, to check the harness

For each scenario and system: FLUSHALL, start the worker process (``sidekiq -r app.rb`` or
``conveyor worker --app pyapp:app``) at the scenario's concurrency, wait for its heartbeat, then
push the jobs with Sidekiq's own client (``enqueue.rb``, push_bulk) and wait until the worker
reports that it *completed* all of them (each job records start, end and ``enqueued_at``).

* jobs/s = jobs / (last completion - first ``enqueued_at``): draining and running, not popping;
* latency = completion - ``enqueued_at`` per job (in a drain, mostly time spent in the queue);
* RSS = the worker process's peak resident memory, sampled every 50 ms.

Needs ``ruby``, ``sidekiq`` (Debian's ruby-sidekiq 6.4.1) and ``redis-server`` on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import redis

HERE = Path(__file__).resolve().parent
PAYLOAD_BYTES = 5 * 1024
START_TIMEOUT_S = 30
RUN_TIMEOUT_S = 600
RSS_SAMPLE_S = 0.05


@dataclass(frozen=True)
class Scenario:
    name: str
    jobs: int
    concurrency: int
    payload_bytes: int
    sleep_s: float


SCENARIOS = [
    Scenario("no-op, 5 KB argument", 20_000, 10, PAYLOAD_BYTES, 0),
    Scenario("sleep 100 ms", 2_000, 50, 16, 0.1),
    Scenario("sleep 100 ms", 10_000, 500, 16, 0.1),
]
SYSTEMS = ["sidekiq", "conveyor-asyncio", "conveyor-thread"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_worker(system: str, sc: Scenario, url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BENCH_N": str(sc.jobs), "REDIS_URL": url, "CONVEYOR_REDIS_URL": url}
    if system == "sidekiq":
        args = ["sidekiq", "-r", str(HERE / "app.rb"), "-q", "bench", "-c", str(sc.concurrency),
                "-t", "5"]
    else:
        env["BENCH_EXECUTOR"] = system.split("-", 1)[1]
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
        args = [sys.executable, "-m", "conveyor", "worker", "--app", "pyapp:app", "-q", "bench",
                "-c", str(sc.concurrency)]
    with log.open("ab") as out:
        return subprocess.Popen(args, cwd=HERE, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_heartbeat(r: redis.Redis, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}")
        for ident in r.smembers("processes"):
            info = r.hget(ident, "info")
            if info and json.loads(info).get("pid") == proc.pid:
                return
        time.sleep(0.05)
    raise RuntimeError("worker did not heartbeat")


class PeakRss(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                rss = self.proc.memory_info().rss
                for child in self.proc.children(recursive=True):
                    rss += child.memory_info().rss
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            self.done.wait(RSS_SAMPLE_S)


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def run_one(system: str, sc: Scenario, url: str, logdir: Path) -> dict[str, object]:
    r = redis.Redis.from_url(url)
    r.flushall()
    proc = start_worker(system, sc, url, logdir / f"{system}.log")
    try:
        wait_heartbeat(r, proc)
        rss = PeakRss(proc.pid)
        rss.start()
        env = {**os.environ, "REDIS_URL": url, "BENCH_N": str(sc.jobs),
               "PAYLOAD_BYTES": str(sc.payload_bytes), "SLEEP_S": str(sc.sleep_s)}
        subprocess.run(["ruby", str(HERE / "enqueue.rb")], env=env, check=True)
        reply = r.blpop(["bench:result"], timeout=RUN_TIMEOUT_S)
        rss.done.set()
        if reply is None:
            raise RuntimeError(f"{system} did not finish {sc.jobs} jobs")
        records = json.loads(reply[1])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        r.close()
    first = min(e for _, _, e in records)
    last = max(end for _, end, _ in records)
    lat = sorted(end - e for _, end, e in records)
    return {"system": system, "scenario": sc.name, "jobs": sc.jobs,
            "concurrency": sc.concurrency, "jobs_per_s": round(sc.jobs / (last - first)),
            "p50_ms": round(percentile(lat, 0.50) * 1000, 1),
            "p99_ms": round(percentile(lat, 0.99) * 1000, 1),
            "mean_run_ms": round(statistics.fmean(end - s for s, end, _ in records) * 1000, 2),
            "rss_mb": round(rss.peak / 2**20, 1)}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ruby = subprocess.run(["ruby", "-e", "print RUBY_DESCRIPTION"], capture_output=True,
                          text=True).stdout
    redis_v = subprocess.run(["redis-server", "--version"], capture_output=True,
                             text=True).stdout.split()[2]
    return (f"{cpu}, {psutil.cpu_count()} vCPU, {psutil.virtual_memory().total // 2**30} GiB; "
            f"Python {platform.python_version()}; {ruby}; Redis {redis_v}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x fewer jobs")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    opts = parser.parse_args()
    for tool in ("ruby", "sidekiq", "redis-server"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not on PATH (bash scripts/system-deps.sh installs it)")
    logdir = Path(tempfile.mkdtemp(prefix="bench-sidekiq-"))
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no", "--dir", str(logdir)],
                              stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    rows = []
    try:
        time.sleep(0.3)
        print(f"machine: {machine()}\nlogs: {logdir}\n")
        print("| scenario | jobs | concurrency | system | jobs/s | p50 ms | p99 ms | "
              "mean run ms | peak RSS MB |")
        print("|---|---|---|---|---|---|---|---|---|")
        for sc in SCENARIOS:
            if opts.quick:
                sc = Scenario(sc.name, sc.jobs // 10, sc.concurrency, sc.payload_bytes, sc.sleep_s)
            for system in opts.systems.split(","):
                row = run_one(system, sc, url, logdir)
                rows.append(row)
                print(f"| {sc.name} | {sc.jobs:,} | {sc.concurrency} | {system} | "
                      f"{row['jobs_per_s']:,} | {row['p50_ms']} | {row['p99_ms']} | "
                      f"{row['mean_run_ms']} | {row['rss_mb']} |", flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)
    if opts.json:
        opts.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
