"""Worker processes: start them, measure their whole process tree from /proc, stop them by pid.

CPU time of a tree is the sum over its live processes of user+system time plus the time of the
children each has already reaped (``cutime``/``cstime``), so processes that came and went (RQ's
work horses, Celery's pool children) are counted once. Memory is sampled every SAMPLE_INTERVAL_S:
RSS from ``/proc/<pid>/statm`` and PSS (shared pages split between the processes that map them)
from ``/proc/<pid>/smaps_rollup``; the peaks are of the tree's sums.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil

SAMPLE_INTERVAL_S = 0.1
STOP_TIMEOUT_S = 30.0
LEFTOVER_GRACE_S = 3.0  # for children to exit after their parent
PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024


def tree(pid: int) -> list[psutil.Process]:
    """The process and its descendants that are alive now."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for p in tree(pid):
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def _rss_pss(pid: int) -> tuple[int, int]:
    try:
        rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        pss = 0
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
                    break
        return rss, pss
    except (OSError, ValueError, IndexError):
        return 0, 0


class Sampler(threading.Thread):
    """Samples a tree's memory until stopped; remembers every process it saw, to stop them."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.pids: dict[int, float] = {}
        self.rss_peak = 0
        self.pss_peak = 0
        self.procs_peak = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(SAMPLE_INTERVAL_S):
            self.sample()

    def sample(self) -> None:
        procs = tree(self.pid)
        self.pids.update(_identities(procs))
        rss = pss = 0
        for p in procs:
            r, s = _rss_pss(p.pid)
            rss, pss = rss + r, pss + s
        self.rss_peak = max(self.rss_peak, rss)
        self.pss_peak = max(self.pss_peak, pss)
        self.procs_peak = max(self.procs_peak, len(procs))

    def stop(self) -> dict[str, float]:
        self.sample()
        self._stop_event.set()
        self.join()
        return {"rss_peak_mb": round(self.rss_peak / MB, 1),
                "pss_peak_mb": round(self.pss_peak / MB, 1), "procs": self.procs_peak}


def start(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[bytes], seen: dict[int, float]) -> None:
    """TERM the worker (each peer's graceful stop), then KILL whatever of its tree is left.

    ``seen`` maps each pid of the tree to its start time, so a recycled pid is never touched.
    """
    seen = {**seen, **_identities(tree(proc.pid))}
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    while time.monotonic() < deadline and _leftovers(seen, proc.pid):
        time.sleep(0.05)
    for p in _leftovers(seen, proc.pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


def _identities(procs: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            out[p.pid] = p.create_time()
    return out


def _leftovers(seen: dict[int, float], root: int) -> list[psutil.Process]:
    alive = []
    for pid, created in seen.items():
        if pid == root:
            continue
        with contextlib.suppress(psutil.NoSuchProcess):
            p = psutil.Process(pid)
            if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
    return alive
