"""One peer on the benchmark's Redis: its client driver, its worker, and one measured drain.

A drain: flush Redis, prefill N jobs with the peer's client, start the peer's worker, block
until the first job signals it finished (the window opens: CPU of the worker tree and of Redis
are read), block until the N-th signals (the window closes), then stop the worker. Rates come
from the jobs' own timestamps; Redis commands come from ``INFO commandstats`` deltas, less the
jobs' counter, which lives on a second Redis (see ``apps/marks.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis

from . import procs
from .apps import marks
from .specs import APPS, SIDEKIQ_APP, PeerSpec

DRIVER_TIMEOUT_S = 900.0
WORKER_CHECK_S = 1  # how often a blocked wait checks that the worker is still alive


@dataclass
class Env:
    """What every run shares: the broker Redis (and a client on it), the marks Redis (the jobs'
    counter, see ``apps/marks.py``), and where logs go."""

    url: str
    redis_pid: int
    r: redis.Redis
    marks_url: str
    m: redis.Redis
    logs: Path
    timeout_s: float


def commandstats(r: redis.Redis) -> dict[str, int]:
    info: dict[str, Any] = r.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


def command_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Commands the peer sent to the broker between two snapshots (INFO is the harness's)."""
    out = {}
    for cmd, calls in after.items():
        d = calls - before.get(cmd, 0)
        if d > 0 and cmd != "info":
            out[cmd] = d
    return out


class PeerRunner:
    def __init__(self, env: Env, spec: PeerSpec, python: Path | None) -> None:
        self.env = env
        self.spec = spec
        self.python = python
        self.bin = python.parent if python else Path()

    def _environ(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "BENCH_REDIS_URL": self.env.url,
                "BENCH_MARKS_URL": self.env.marks_url, "CONVEYOR_REDIS_URL": self.env.url,
                "PYTHONPATH": str(APPS), "PYTHONDONTWRITEBYTECODE": "1", **extra}

    def driver(self, *args: str) -> dict[str, Any]:
        if self.spec.ruby:
            argv = ["ruby", str(SIDEKIQ_APP.parent / "driver.rb"), *args]
        else:
            argv = [str(self.python), str(APPS / "driver.py"), self.spec.app, *args]
        out = subprocess.run(argv, env=self._environ(), cwd=APPS, capture_output=True,
                             text=True, timeout=DRIVER_TIMEOUT_S)
        if out.returncode != 0 or not out.stdout.strip():
            raise RuntimeError(f"{self.spec.name} driver {args[0]} failed: "
                               f"{(out.stderr or out.stdout)[-800:]}")
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result

    def start_worker(self, concurrency: int, target: int) -> subprocess.Popen[bytes]:
        argv = self.spec.worker(self.bin, concurrency, self.env.url)
        log = self.env.logs / f"{self.spec.name}-worker.log"
        env = self._environ(BENCH_TARGET=str(target), BENCH_CONCURRENCY=str(concurrency))
        return procs.start(argv, env, APPS, log)

    def drain(self, kind: str, n: int, concurrency: int) -> dict[str, Any]:
        """Prefill n jobs of ``kind``, then time one worker at ``concurrency`` draining them."""
        r = self.env.r
        r.flushall()
        self.env.m.flushall()
        self.driver("enqueue", "--kind", kind, "--n", str(n), "--mode", "fill")
        before = commandstats(r)
        redis_proc = psutil.Process(self.env.redis_pid)
        worker = self.start_worker(concurrency, n)
        sampler = procs.Sampler(worker.pid)
        sampler.start()
        try:
            result = self._measure(worker, redis_proc, before, kind, n, concurrency)
        finally:
            memory = sampler.stop()
            procs.stop(worker, sampler.pids)
        return {**result, **memory}

    def _measure(self, worker: subprocess.Popen[bytes], redis_proc: psutil.Process,
                 before: dict[str, int], kind: str, n: int, concurrency: int) -> dict[str, Any]:
        m = self.env.m
        if not self._signalled(marks.FIRST_SIGNAL, worker):
            return self._failed("no job finished", worker)
        cpu0, rcpu0 = procs.cpu_seconds(worker.pid), sum(redis_proc.cpu_times()[:2])
        if not self._signalled(marks.FINISHED_SIGNAL, worker):
            return self._failed(f"only {int(m.get(marks.DONE) or 0)}/{n} jobs finished", worker)
        cpu1, rcpu1 = procs.cpu_seconds(worker.pid), sum(redis_proc.cpu_times()[:2])
        cmds = command_delta(before, commandstats(self.env.r))
        t_first, t_last = (float(m.get(k) or 0) for k in (marks.FIRST_AT, marks.LAST_AT))
        out: dict[str, Any] = {
            "n": n, "concurrency": concurrency, "seconds": t_last - t_first,
            "per_s": (n - 1) / (t_last - t_first),
            "cpu_us_per_job": (cpu1 - cpu0) / (n - 1) * 1e6,
            "redis_cpu_us_per_job": (rcpu1 - rcpu0) / (n - 1) * 1e6,
            "cmds_per_job": sum(cmds.values()) / n,
            "evals_per_job": sum(v for k, v in cmds.items() if k in ("evalsha", "eval")) / n,
            "commands": cmds,
        }
        if kind == "second":
            out["first_start_to_last_s"] = t_last - float(m.get(marks.START_AT) or t_first)
        return out

    def _signalled(self, key: str, worker: subprocess.Popen[bytes]) -> bool:
        """Block until a job pushes ``key``; False on the timeout or when the worker died."""
        deadline = time.monotonic() + self.env.timeout_s
        while time.monotonic() < deadline:
            if self.env.m.blpop([key], timeout=WORKER_CHECK_S) is not None:
                return True
            if worker.poll() is not None:
                return False
        return False

    def _failed(self, what: str, worker: subprocess.Popen[bytes]) -> dict[str, Any]:
        exited = worker.poll()
        tail = (self.env.logs / f"{self.spec.name}-worker.log").read_text(errors="replace")
        state = f"worker exited with {exited}" if exited is not None else "worker running"
        return {"error": f"{what} within {self.env.timeout_s}s ({state}): {tail[-600:]}"}

    def latency(self, samples: int, gap_ms: float) -> dict[str, Any]:
        self.env.r.flushall()
        self.env.m.flushall()
        worker = self.start_worker(self.spec.one_process_concurrency, 0)
        try:
            return self.driver("latency", "--samples", str(samples), "--gap-ms", str(gap_ms))
        finally:
            procs.stop(worker, {})
