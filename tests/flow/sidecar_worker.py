"""A worker process for the shared sidecar-breaker test: ``python sidecar_worker.py URL``.

Its jobs run in the Python sidecar at URL (``tests/executors/sidecar_app.py`` serves them); the
http executor's breaker opens after 3 sidecar failures and stays open 1 s, so the test is short.
Settings come from ``CONVEYOR_*`` variables (``flow_procs.FAST_ENV``); TERM stops it gracefully.
"""

from __future__ import annotations

import sys

from conveyor import App, Backoff
from conveyor.app import JobSpec
from conveyor.settings import Settings
from conveyor.worker import run_worker

THRESHOLD = 3
OPEN_S = 1.0
CONCURRENCY = 2
QUICK = Backoff(base_s=0.05, factor=1.0, cap_s=0.2, jitter=0.5)


async def _remote(seconds: float) -> float:  # runs in the sidecar, never here
    raise AssertionError("the Sleeper job runs in the sidecar")


def main(url: str) -> None:
    app = App(settings=Settings.from_env())
    app.register(JobSpec(name="Sleeper", fn=_remote, executor="http", retry=25, backoff=QUICK))
    options = {"http": {"url": url, "failure_threshold": THRESHOLD, "reset_after_s": OPEN_S}}
    run_worker(app, concurrency=CONCURRENCY, executor_options=options)


if __name__ == "__main__":
    main(sys.argv[1])
