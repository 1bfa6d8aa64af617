"""A job app for process-level tests: each run is written to a ledger in Redis.

The ledger lives under ``ledger:`` keys: ``ledger:started`` and ``ledger:finished`` lists of
"jid pid", so a test can count runs, duplicates and which worker ran what.
"""

from __future__ import annotations

import os
import time

import redis

from conveyor import App, current_job

app = App()
_ledger: redis.Redis | None = None


def ledger() -> redis.Redis:
    global _ledger
    if _ledger is None:
        _ledger = redis.Redis.from_url(os.environ["LEDGER_REDIS_URL"])
    return _ledger


@app.job(name="work")
def work(ms: int) -> int:
    jid = current_job().jid
    ledger().rpush("ledger:started", f"{jid} {os.getpid()}")
    time.sleep(ms / 1000)
    ledger().rpush("ledger:finished", f"{jid} {os.getpid()}")
    return ms


@app.job(name="crash", retry=25)
def crash() -> None:
    os._exit(1)
