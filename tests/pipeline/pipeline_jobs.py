"""Job types for the distributed-stage tests that run real worker processes.

A worker started with ``--app pipeline_jobs:app`` (``tests/pipeline`` on ``PYTHONPATH``) serves
them; the test registers the same functions under the same names on its own app to enqueue.
Each run of ``slow_square`` is written to the ``pipe:started`` and ``pipe:finished`` lists
("jid pid") of the Redis at ``LEDGER_REDIS_URL``, so a test sees which worker ran what; each
run of ``poison`` goes to ``pipe:poison``.
"""

from __future__ import annotations

import os
import signal
import time

import redis

from conveyor import App, current_job

SLOW_SQUARE_S = 0.4  # long enough that a worker killed mid-run is holding jobs

app = App()
_ledger: redis.Redis | None = None


def ledger() -> redis.Redis:
    global _ledger
    if _ledger is None:
        _ledger = redis.Redis.from_url(os.environ["LEDGER_REDIS_URL"])
    return _ledger


def slow_square(x: int) -> int:
    jid = current_job().jid
    ledger().rpush("pipe:started", f"{jid} {os.getpid()}")
    time.sleep(SLOW_SQUARE_S)
    ledger().rpush("pipe:finished", f"{jid} {os.getpid()}")
    return x * x


app.job(slow_square, name="pipe.slow_square", retry=0)


def poison(x: int) -> int:
    """Kills the worker process that runs it (the default executor runs jobs in-process)."""
    ledger().rpush("pipe:poison", f"{current_job().jid} {os.getpid()}")
    os.kill(os.getpid(), signal.SIGKILL)
    return x


app.job(poison, name="pipe.poison", retry=0)
