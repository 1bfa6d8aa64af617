"""The peers and how each one's idiomatic worker is started, with the concurrency rules.

Fair concurrency, the same for every peer:

* Workloads 1 and 3 run ONE worker process at concurrency ONE_PROCESS_CONCURRENCY (10: the
  default of Sidekiq 6, Conveyor, arq and SAQ). RQ has no concurrency inside a process (each job
  runs in a forked work horse), so it runs one ``rq worker``.
* Workload 2 runs at 50 and at the peer's highest practical concurrency in one process: 1,000
  coroutines for the asyncio peers, THREAD_MAX threads for the thread-pool peers (Celery, Dramatiq,
  Huey, Sidekiq). RQ's only concurrency is processes: ``rq worker-pool -n 50`` for both.
* Workload 4 (10,000 concurrent 1-second jobs in one process) needs coroutine jobs: it runs for
  Conveyor, arq, SAQ and Taskiq; the thread and process peers would need 10,000 threads.

Where a peer's CLI starts a supervisor next to the worker process (Dramatiq, Taskiq), the
supervisor is counted in CPU and memory too; ``procs`` in the results shows the count.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
SIDEKIQ_APP = HERE / "sidekiq" / "app.rb"
ONE_PROCESS_CONCURRENCY = 10
ASYNC_MAX = 1000
THREAD_MAX = 200
RQ_MAX_PROCESSES = 50
PYTHON_PEERS = ("rq", "celery", "dramatiq", "arq", "saq", "taskiq", "huey")
ALL_PEERS = ("conveyor", *PYTHON_PEERS, "sidekiq")

Argv = Callable[[Path, int, str], list[str]]  # (venv bin dir, concurrency, redis url) -> argv


@dataclass(frozen=True)
class PeerSpec:
    name: str
    worker: Argv
    one_process_concurrency: int = ONE_PROCESS_CONCURRENCY
    max_concurrency: int = THREAD_MAX
    async_jobs: bool = False  # coroutine jobs: thousands at once in one process (workload 4)
    ruby: bool = False

    @property
    def app(self) -> str:
        return f"{self.name}_app"


def _conveyor(_bin: Path, c: int, _url: str) -> list[str]:
    return [sys.executable, "-m", "conveyor", "worker", "--app", "conveyor_app:app",
            "-q", "default", "-c", str(c)]


def _rq(b: Path, c: int, url: str) -> list[str]:
    if c == 1:
        return [str(b / "rq"), "worker", "-u", url, "default"]
    return [str(b / "rq"), "worker-pool", "-u", url, "-n", str(c), "default"]


def _celery(b: Path, c: int, _url: str) -> list[str]:
    return [str(b / "celery"), "-A", "celery_app", "worker", "-P", "threads", "-c", str(c)]


def _dramatiq(b: Path, c: int, _url: str) -> list[str]:
    return [str(b / "dramatiq"), "dramatiq_app", "-p", "1", "-t", str(c)]


def _arq(b: Path, _c: int, _url: str) -> list[str]:
    return [str(b / "arq"), "arq_app.WorkerSettings"]  # max_jobs from BENCH_CONCURRENCY


def _saq(b: Path, _c: int, _url: str) -> list[str]:
    return [str(b / "saq"), "saq_app.settings", "--workers", "1"]  # from BENCH_CONCURRENCY


def _taskiq(b: Path, c: int, _url: str) -> list[str]:
    return [str(b / "taskiq"), "worker", "taskiq_app:broker", "--workers", "1",
            "--max-async-tasks", str(c)]


def _huey(b: Path, c: int, _url: str) -> list[str]:
    return [str(b / "huey_consumer"), "huey_app.huey", "-k", "thread", "-w", str(c)]


def _sidekiq(_bin: Path, c: int, _url: str) -> list[str]:
    return ["sidekiq", "-r", str(SIDEKIQ_APP), "-c", str(c), "-q", "default"]


SPECS: dict[str, PeerSpec] = {s.name: s for s in (
    PeerSpec("conveyor", _conveyor, max_concurrency=ASYNC_MAX, async_jobs=True),
    PeerSpec("rq", _rq, one_process_concurrency=1, max_concurrency=RQ_MAX_PROCESSES),
    PeerSpec("celery", _celery),
    PeerSpec("dramatiq", _dramatiq),
    PeerSpec("arq", _arq, max_concurrency=ASYNC_MAX, async_jobs=True),
    PeerSpec("saq", _saq, max_concurrency=ASYNC_MAX, async_jobs=True),
    PeerSpec("taskiq", _taskiq, max_concurrency=ASYNC_MAX, async_jobs=True),
    PeerSpec("huey", _huey),
    PeerSpec("sidekiq", _sidekiq, ruby=True),
)}
