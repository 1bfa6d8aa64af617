"""The asyncio target of issue 3, through a real worker: 10,000 concurrent 1-second sleeping jobs
in one worker process, at >= 90% of ideal throughput with RSS under 300 MB.

    .venv/bin/python bench/executors/worker_10k.py              # burst and stream, best of 3
    .venv/bin/python bench/executors/worker_10k.py --repeat 1 --shape stream

It reuses the side-by-side harness (``bench/peers``): its own Redis, the jobs prefilled with the
client, then ``conveyor worker -c 10000`` started as a process; the jobs are the harness's
``second`` jobs (``bench/peers/apps/conveyor_app.py``: mark the first start, sleep 1 s, count
themselves on a second Redis). Two shapes:

* ``burst``: 10,000 jobs, concurrency 10,000. Ideal: every job done 1 s after the first starts.
  This is ``async_1s_10k`` of ``docs/benchmarks.md``; it measures mainly how fast the worker
  starts 10,000 jobs, and it starts counting at the first job's start, so work done before that
  (fetching and parsing) is free in it.
* ``stream``: 50,000 jobs, concurrency 10,000, so each slot runs five jobs in a row and the
  worker must keep fetching, acknowledging and refilling while jobs run: the sustained rate.
  Ideal: 10,000 jobs/s, i.e. all done 5 s after the first start.

Efficiency = ideal time / (last job's end - first job's start). Also printed: the worker's CPU
per job (between the first job's end and the last's), peak RSS of the worker process, and the
load average, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests")]

import redis  # noqa: E402
from peers.apps import marks  # noqa: E402
from peers.runner import Env, PeerRunner  # noqa: E402
from peers.specs import SPECS, PeerSpec  # noqa: E402

from redis_server import RedisServer  # noqa: E402

JOB_S = 1.0
CONCURRENCY = 10_000
SHAPES = {"burst": 10_000, "stream": 50_000}
TIMEOUT_S = 300.0
MAX_CLIENTS = 19_000
PY_SPY_RATE_HZ = 200
QUEUE = "queue:default"
FETCH_POLL_S = 0.001


def commit() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True, check=False)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return out.stdout.strip() + ("+uncommitted src changes" if dirty else "")


class FirstFetch(threading.Thread):
    """Polls the queue's length every FETCH_POLL_S: the time it first drops is when the
    worker's first fetch took jobs (the start of the "from first fetch" figure)."""

    def __init__(self, url: str, n: int) -> None:
        super().__init__(daemon=True)
        self.r = redis.Redis.from_url(url)
        self.n = n
        self.at = 0.0
        self.stop = threading.Event()

    def run(self) -> None:  # started once the n jobs are in the queue, with the worker
        while not self.stop.is_set():
            if self.r.llen(QUEUE) < self.n:
                self.at = time.time()
                return
            time.sleep(FETCH_POLL_S)


def one(runner: PeerRunner, n: int) -> dict[str, float]:
    load = os.getloadavg()[0]
    env = runner.env
    watch = FirstFetch(env.url, n)
    real_start = runner.start_worker

    def start_worker(concurrency: int, target: int) -> subprocess.Popen[bytes]:
        watch.start()  # the jobs are in the queue by now
        return real_start(concurrency, target)

    runner.start_worker = start_worker  # type: ignore[method-assign]
    try:
        out = runner.drain("second", n, CONCURRENCY)
    finally:
        watch.stop.set()
        watch.join()
    if "error" in out:
        raise RuntimeError(out["error"])
    took = out["first_start_to_last_s"]
    last = float(env.m.get(marks.LAST_AT) or 0)
    ideal = n / CONCURRENCY * JOB_S
    from_fetch = last - watch.at if watch.at else float("nan")
    return {"n": n, "took_s": took, "efficiency": ideal / took, "per_s": n / took,
            "from_fetch_s": from_fetch, "efficiency_from_fetch": ideal / from_fetch,
            "cpu_us_per_job": out["cpu_us_per_job"],
            "redis_cpu_us_per_job": out["redis_cpu_us_per_job"],
            "cmds_per_job": out["cmds_per_job"], "rss_peak_mb": out["rss_peak_mb"],
            "scripts_per_job": out["evals_per_job"],
            "load_before": load, "load_after": os.getloadavg()[0]}


class SourceRunner(PeerRunner):
    """The conveyor peer, its worker importing ``conveyor`` from ``src``."""

    def __init__(self, env: Env, spec: PeerSpec, python: Path, src: Path) -> None:
        super().__init__(env, spec, python)
        self.src = src.resolve()

    def _environ(self, **extra: str) -> dict[str, str]:
        environ = super()._environ(**extra)
        environ["PYTHONPATH"] = os.pathsep.join([str(self.src), environ["PYTHONPATH"]])
        return environ


def profiled(out: str) -> PeerSpec:
    """The conveyor peer, its worker run under ``py-spy record`` (raw folded stacks)."""
    spec = SPECS["conveyor"]

    def argv(bin_dir: Path, c: int, url: str) -> list[str]:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        record = [spy, "record", "-r", str(PY_SPY_RATE_HZ), "--format", "raw", "-o", out,
                  "--", *spec.worker(bin_dir, c, url)]
        # the harness stops a worker with TERM; py-spy writes its file only on INT
        script = f'{shlex.join(record)} & p=$!; trap "kill -INT $p" TERM; wait $p; wait $p'
        return ["sh", "-c", script]

    return dataclasses.replace(spec, worker=argv)


def floor() -> PeerSpec:
    """The conveyor peer's jobs and client, drained by ``floor_worker.py`` instead of Conveyor."""

    def argv(_bin: Path, c: int, _url: str) -> list[str]:
        return [sys.executable, str(HERE / "floor_worker.py"), str(c)]

    return dataclasses.replace(SPECS["conveyor"], worker=argv)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--shape", choices=[*SHAPES, "both"], default="both")
    ap.add_argument("--json", type=Path, help="append each run as a JSON line to this file")
    ap.add_argument("--src", type=Path, action="append", default=[],
                    help="run the worker on this copy of src/ (e.g. an older commit, from "
                         "`git archive`); repeat to interleave several copies")
    ap.add_argument("--floor", action="store_true",
                    help="also run floor_worker.py (pop, decode, a task per job, nothing else), "
                         "interleaved: the ceiling on this machine")
    ap.add_argument("--py-spy", type=Path, metavar="PREFIX",
                    help="record each worker with py-spy (raw stacks to PREFIX-<shape>-<i>.txt)")
    args = ap.parse_args()
    shapes = list(SHAPES) if args.shape == "both" else [args.shape]
    logs = Path(tempfile.mkdtemp(prefix="conveyor-10k-"))
    print(f"commit {commit()}, {os.cpu_count()} CPUs, load {os.getloadavg()}", flush=True)
    with RedisServer() as server, RedisServer() as marks_server:
        r = redis.Redis.from_url(server.url, socket_timeout=None)
        m = redis.Redis.from_url(marks_server.url, socket_timeout=None)
        for client in (r, m):
            client.config_set("maxclients", MAX_CLIENTS)
        env = Env(server.url, server.pid or 0, r, marks_server.url, m, logs, TIMEOUT_S)
        best: dict[str, dict[str, float]] = {}
        trees: list[Path | None] = [*(args.src or [ROOT / "src"]), *([None] if args.floor else [])]
        for i in range(args.repeat):  # interleaved, so a change of load hits every variant
            for shape, tree in itertools.product(shapes, trees):
                runner = SourceRunner(env, SPECS["conveyor"] if tree else floor(),
                                      Path(sys.executable), tree or ROOT / "src")
                if args.py_spy and tree:
                    runner.spec = profiled(f"{args.py_spy}-{shape}-{i + 1}.txt")
                res = one(runner, SHAPES[shape])
                label = shape if len(trees) == 1 else f"{shape} {tree or 'floor'}"
                print(f"  {label} #{i + 1}: {res['efficiency']:.1%} of ideal from the first "
                      f"start ({res['n']:,} jobs in {res['took_s']:.3f} s, {res['per_s']:,.0f}/s)"
                      f", {res['efficiency_from_fetch']:.1%} from the first fetch "
                      f"({res['from_fetch_s']:.3f} s), "
                      f"worker CPU {res['cpu_us_per_job']:.0f} us/job, Redis CPU "
                      f"{res['redis_cpu_us_per_job']:.0f} us/job, {res['cmds_per_job']:.1f} "
                      f"cmds/job ({res['scripts_per_job']:.3f} scripts), RSS "
                      f"{res['rss_peak_mb']:.0f} MB, load "
                      f"{res['load_before']:.2f} -> {res['load_after']:.2f}", flush=True)
                if args.json:
                    with args.json.open("a") as f:
                        f.write(json.dumps({"shape": shape, "src": str(tree or "floor_worker.py"),
                                            "commit": commit(),
                                            **res}) + "\n")
                if label not in best or res["efficiency"] > best[label]["efficiency"]:
                    best[label] = res
        r.close()
        m.close()
    for label, res in best.items():
        print(f"best {label}: {res['efficiency']:.1%} of ideal from the first start "
              f"({res['efficiency_from_fetch']:.1%} from the first fetch), "
              f"RSS {res['rss_peak_mb']:.0f} MB")
    print(f"worker logs: {logs}")


if __name__ == "__main__":
    main()
