"""Sidekiq 6.4.1 against Conveyor on the same Redis, in the same run (issue 4).

    python bench/sidekiq/run.py                  # 3 interleaved rounds, medians printed
    python bench/sidekiq/run.py --quick          # 10x fewer jobs, one round: harness check
    python bench/sidekiq/run.py --report RUN_ID  # the median table of a recorded run

For each round, scenario and system: FLUSHALL; push the jobs with Sidekiq's own client
(``enqueue.rb``, push_bulk, 1,000 a call) and move the filled queue aside (RENAME); start the
worker process (``sidekiq -r app.rb`` or ``conveyor worker --app pyapp:app``) at the
scenario's concurrency and wait for its heartbeat; then RENAME the queue back, which wakes the
worker's blocked BRPOP/BLMOVE: the whole burst lands at once. Wait until the worker reports
that it *completed* all of them (each job records its start and end). So neither the Ruby
client's speed nor its CPU, nor the worker's boot, is in the figures. Rounds are interleaved
(round 1 runs every system once, then round 2...), so a change in the machine's load spreads
over all systems instead of landing on one.

* jobs/s = jobs / (last completion - release): draining and running, not popping;
* p50/p99 = completion - release per job: how long a job of the burst waits until it is done;
* run p50/p99 = the job body's own time (end - start): a 100 ms sleep stretched by scheduling;
* RSS = the worker process's peak resident memory (children included), sampled every 50 ms;
* CPU per job = the worker's and Redis's user+system CPU from release to the last job, per job.

Conveyor runs from a ``git archive`` export of HEAD (``--working-tree`` runs the working tree
as it is and records its modified files). Raw results are appended as JSON lines to
``bench/results/sidekiq.jsonl``: one ``run`` line (machine, git commit, versions, load) and one
``result`` line per measurement (with ``os.getloadavg()`` before and after). The tables are
computed from those lines.

Needs ``ruby``, ``sidekiq`` (Debian's ruby-sidekiq 6.4.1), ``redis-server`` and ``git`` on PATH.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
import redis

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RESULTS = REPO / "bench" / "results" / "sidekiq.jsonl"
PAYLOAD_BYTES = 5 * 1024
SMALL_PAYLOAD_BYTES = 16
JOBS = 20_000
REPEAT = 3
START_TIMEOUT_S = 30
RUN_TIMEOUT_S = 600
STOP_TIMEOUT_S = 30
RSS_SAMPLE_S = 0.05
REDIS_START_TIMEOUT_S = 10
SETTLE_S = 1.0  # after the heartbeat, so that every fetcher thread / waiter is blocked on the queue
QUEUE = "queue:bench"
STAGING = "bench:staging"
RESULT = "bench:result"


@dataclass(frozen=True)
class Scenario:
    name: str
    jobs: int
    concurrency: int
    payload_bytes: int
    sleep_s: float


def scenarios(jobs: int, jobs_500: int) -> list[Scenario]:
    return [
        Scenario("no-op, 5 KB argument", jobs, 10, PAYLOAD_BYTES, 0),
        Scenario("no-op, 16 B argument", jobs, 10, SMALL_PAYLOAD_BYTES, 0),
        Scenario("sleep 100 ms", jobs, 50, SMALL_PAYLOAD_BYTES, 0.1),
        Scenario("sleep 100 ms", jobs_500, 500, SMALL_PAYLOAD_BYTES, 0.1),
    ]


SYSTEMS = ["sidekiq", "conveyor-asyncio", "conveyor-thread"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()


def export_head(dest: Path) -> Path:
    """``src/`` of HEAD, unpacked under ``dest``: the code other people's edits cannot change."""
    archive = subprocess.run(["git", "archive", "--format=tar", "HEAD", "src"], cwd=REPO,
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src"


def start_worker(system: str, sc: Scenario, url: str, src: Path,
                 log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BENCH_N": str(sc.jobs), "REDIS_URL": url, "CONVEYOR_REDIS_URL": url}
    if system == "sidekiq":
        args = ["sidekiq", "-r", str(HERE / "app.rb"), "-q", "bench", "-c", str(sc.concurrency),
                "-t", "5"]
    else:
        env["BENCH_EXECUTOR"] = system.split("-", 1)[1]
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(src)])
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


def cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def redis_cpu_s(r: redis.Redis) -> float:
    info: Any = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_one(system: str, sc: Scenario, url: str, src: Path, logdir: Path) -> dict[str, Any]:
    # redis-py 8 gives every socket a 5 s read timeout; BLPOP below waits for the whole drain
    r = redis.Redis.from_url(url, socket_timeout=RUN_TIMEOUT_S + STOP_TIMEOUT_S)
    r.flushall()
    env = {**os.environ, "REDIS_URL": url, "BENCH_N": str(sc.jobs),
           "PAYLOAD_BYTES": str(sc.payload_bytes), "SLEEP_S": str(sc.sleep_s)}
    t0 = time.monotonic()
    subprocess.run(["ruby", str(HERE / "enqueue.rb")], env=env, check=True)
    enqueue_s = time.monotonic() - t0
    if r.llen(QUEUE) != sc.jobs:
        raise RuntimeError(f"enqueue.rb left {r.llen(QUEUE)} jobs in {QUEUE}, not {sc.jobs}")
    r.rename(QUEUE, STAGING)  # out of the worker's sight until it is up and waiting
    load_before = os.getloadavg()
    proc = start_worker(system, sc, url, src, logdir / f"{system}.log")
    try:
        wait_heartbeat(r, proc)
        time.sleep(SETTLE_S)
        worker = psutil.Process(proc.pid)
        rss = PeakRss(proc.pid)
        rss.start()
        cpu0, rcpu0 = cpu_s(worker), redis_cpu_s(r)
        released = time.time()
        r.rename(STAGING, QUEUE)  # wakes the worker's blocked BRPOP / BLMOVE: the burst lands
        reply = r.blpop([RESULT], timeout=RUN_TIMEOUT_S)
        cpu1, rcpu1 = cpu_s(worker), redis_cpu_s(r)
        rss.done.set()
        if reply is None:
            raise RuntimeError(f"{system} did not finish {sc.jobs} jobs")
        records = json.loads(reply[1])
    finally:
        stop(proc)
        r.close()
    last = max(end for _, end, _ in records)
    done = sorted(end - released for _, end, _ in records)
    run = sorted(end - start for start, end, _ in records)
    return {"system": system, "scenario": sc.name, "jobs": sc.jobs,
            "concurrency": sc.concurrency, "payload_bytes": sc.payload_bytes,
            "sleep_s": sc.sleep_s, "enqueue_s": round(enqueue_s, 3),
            "seconds": round(last - released, 3),
            "jobs_per_s": round(sc.jobs / (last - released), 1),
            "p50_ms": round(percentile(done, 0.50) * 1000, 1),
            "p99_ms": round(percentile(done, 0.99) * 1000, 1),
            "run_p50_ms": round(percentile(run, 0.50) * 1000, 2),
            "run_p99_ms": round(percentile(run, 0.99) * 1000, 2),
            "mean_run_ms": round(statistics.fmean(run) * 1000, 2),
            "rss_mb": round(rss.peak / 2**20, 1),
            "worker_cpu_us_per_job": round((cpu1 - cpu0) / sc.jobs * 1e6, 1),
            "redis_cpu_us_per_job": round((rcpu1 - rcpu0) / sc.jobs * 1e6, 1),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()]}


def _version(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"cpu": cpu, "cores": psutil.cpu_count(),
            "mem_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "ruby": _version(["ruby", "-e", "print RUBY_DESCRIPTION"]),
            "sidekiq": _version(["ruby", "-e", 'require "sidekiq"; print Sidekiq::VERSION']),
            "redis": _version(["redis-server", "--version"]).split()[2].removeprefix("v="),
            "python_packages": {p: _pkg_version(p) for p in
                                ("redis", "hiredis", "orjson", "uvloop", "psutil")}}


def _pkg_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def append(results: Path, line: dict[str, Any]) -> None:
    results.parent.mkdir(parents=True, exist_ok=True)
    with results.open("a") as f:
        f.write(json.dumps(line) + "\n")


def start_redis(logdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no", "--dir", str(logdir)],
                              stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + REDIS_START_TIMEOUT_S
    while True:
        try:
            with redis.Redis.from_url(url) as r:
                r.ping()
            return server, url
        except redis.ConnectionError:
            if time.monotonic() > deadline or server.poll() is not None:
                stop(server)
                raise
            time.sleep(0.05)


KEY_FIELDS = ("scenario", "jobs", "concurrency", "system")
COLUMNS = ("jobs_per_s", "p50_ms", "p99_ms", "run_p50_ms", "run_p99_ms", "rss_mb",
           "worker_cpu_us_per_job", "redis_cpu_us_per_job")


def report(results: Path, run_id: str) -> str:
    """Markdown: the run's header facts and the median of every measure, per scenario/system."""
    lines = [json.loads(x) for x in results.read_text().splitlines() if x.strip()]
    head = next(x for x in lines if x.get("type") == "run" and x["run"] == run_id)
    rows = [x for x in lines if x.get("type") == "result" and x["run"] == run_id]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in KEY_FIELDS), []).append(row)
    loads = sorted(x for row in rows for x in (row["loadavg_before"][0], row["loadavg_after"][0]))
    m = head["machine"]
    tree = f" (working tree, modified: {', '.join(head['dirty'])})" if head["dirty"] else ""
    out = [f"run `{run_id}`, commit `{head['commit'][:12]}`{tree}"
           f"; {m['cpu']}, {m['cores']} cores, {m['mem_gb']} GB; Python {m['python']}; "
           f"{m['ruby']}; Sidekiq {m['sidekiq']}; Redis {m['redis']}",
           f"load average (1 min) around the measurements: min {loads[0]}, median "
           f"{statistics.median(loads)}, max {loads[-1]}; median of {head['repeat']} runs", "",
           "| scenario | jobs | concurrency | system | runs | " + " | ".join(COLUMNS) + " |",
           "|---|---|---|---|---|" + "---|" * len(COLUMNS)]
    for key, group in groups.items():
        medians = [statistics.median(g[c] for g in group) for c in COLUMNS]
        cells = [f"{v:,.0f}" if c in ("jobs_per_s",) else f"{v:,.1f}"
                 for c, v in zip(COLUMNS, medians, strict=True)]
        out.append(f"| {key[0]} | {key[1]:,} | {key[2]} | {key[3]} | {len(group)} | "
                   + " | ".join(cells) + " |")
    return "\n".join([*out, "", *ratios(rows)])


def ratios(rows: list[dict[str, Any]]) -> list[str]:
    """Each Conveyor system's jobs/s over Sidekiq's in the same round: the load of a round
    falls on both, so this is the steadier comparison on a busy machine."""
    sidekiq = {(r["round"], r["scenario"], r["concurrency"]): r["jobs_per_s"] for r in rows
               if r["system"] == "sidekiq"}
    per: dict[tuple[str, int, str], list[float]] = {}
    for r in rows:
        base = sidekiq.get((r["round"], r["scenario"], r["concurrency"]))
        if r["system"] != "sidekiq" and base:
            per.setdefault((r["scenario"], r["concurrency"], r["system"]), []).append(
                r["jobs_per_s"] / base)
    out = ["| scenario | concurrency | system | jobs/s / Sidekiq's, each round | median |",
           "|---|---|---|---|---|"]
    for (name, conc, system), values in per.items():
        each = ", ".join(f"{v:.2f}" for v in values)
        out.append(f"| {name} | {conc} | {system} | {each} | {statistics.median(values):.2f} |")
    return out


def _exit_on_term(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def check_tools() -> None:
    for tool in ("ruby", "sidekiq", "redis-server", "git"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not on PATH (bash scripts/system-deps.sh installs it)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x fewer jobs, one round")
    parser.add_argument("--jobs", type=int, default=JOBS, help="jobs per measurement")
    parser.add_argument("--jobs-500", type=int, help="jobs at concurrency 500 (default --jobs)")
    parser.add_argument("--repeat", type=int, default=REPEAT, help="interleaved rounds")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--working-tree", action="store_true",
                        help="run Conveyor from the working tree instead of HEAD")
    parser.add_argument("--report", metavar="RUN_ID", help="print a recorded run's table")
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON lines file")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the workers' logs (Sidekiq's run to about 100 MB) on success")
    opts = parser.parse_args()
    if opts.report:
        print(report(opts.results, opts.report))
        return
    check_tools()
    # a harness, not a worker: TERM unwinds through the finally blocks that stop (by pid) the
    # worker and the Redis server this run started
    signal.signal(signal.SIGTERM, _exit_on_term)
    jobs, repeat = (opts.jobs // 10, 1) if opts.quick else (opts.jobs, opts.repeat)
    jobs_500 = opts.jobs_500 or jobs
    logdir = Path(tempfile.mkdtemp(prefix="bench-sidekiq-"))
    src = REPO / "src" if opts.working_tree else export_head(logdir / "head")
    run_id = time.strftime("%Y%m%dT%H%M%S")
    dirty = git("status", "--porcelain", "--", "src").splitlines() if opts.working_tree else []
    append(opts.results, {"type": "run", "run": run_id, "commit": git("rev-parse", "HEAD"),
            "dirty": [d[3:] for d in dirty], "quick": opts.quick, "repeat": repeat,
            "jobs": jobs, "jobs_500": jobs_500, "machine": machine(),
            "loadavg": [round(x, 2) for x in os.getloadavg()],
            "scenarios": [asdict(s) for s in scenarios(jobs, jobs_500)]})
    print(f"run {run_id}, logs in {logdir} (kept if the run fails)", flush=True)
    server, url = start_redis(logdir)
    try:
        for rnd in range(repeat):
            for sc in scenarios(jobs, jobs_500):
                for system in opts.systems.split(","):
                    row = {"type": "result", "run": run_id, "round": rnd,
                           **run_one(system, sc, url, src, logdir)}
                    append(opts.results, row)
                    print(json.dumps(row), flush=True)
    finally:
        stop(server)
    print(report(opts.results, run_id))
    if not opts.keep_logs:
        shutil.rmtree(logdir)


if __name__ == "__main__":
    main()
