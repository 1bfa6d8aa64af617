"""The job app of the multi-process flow tests. Every run writes to a ledger in Redis (lists
under ``ledger:``) with the Redis clock, so tests can check limits across processes."""

from __future__ import annotations

import os
import time
from typing import Any

import redis

from conveyor import App, Backoff, current_job
from conveyor.flow import Breaker, ConcurrencyLimit

app = App()
QUICK = Backoff(base_s=0.05, factor=1.0, cap_s=0.2, jitter=0.5)
_ledger: redis.Redis | None = None


def ledger() -> redis.Redis:
    global _ledger
    if _ledger is None:
        _ledger = redis.Redis.from_url(os.environ["LEDGER_REDIS_URL"])
    return _ledger


def now() -> float:
    seconds, micros = ledger().time()
    return seconds + micros / 1e6


def note(name: str, *fields: Any) -> None:
    ledger().rpush(f"ledger:{name}", " ".join(str(f) for f in (current_job().jid, *fields)))


@app.job(name="rated", rate_limit="10/s")
def rated() -> None:
    note("rated", f"{now():.6f}", os.getpid())


@app.job(name="capped", concurrency_limit=3)
def capped(ms: int) -> None:
    note("capped", "start", f"{now():.6f}", os.getpid())
    time.sleep(ms / 1000)
    note("capped", "end", f"{now():.6f}", os.getpid())


@app.job(name="held", concurrency_limit=ConcurrencyLimit(1, key="held", recheck_s=0.2))
def held(ms: int) -> None:
    note("held", f"{now():.6f}", os.getpid())
    time.sleep(ms / 1000)


@app.job(name="remote", retry=25, backoff=QUICK,
         breaker=Breaker(failures=5, open_s=1.0, recheck_s=0.3))
def remote() -> None:
    down = ledger().get("ledger:down") == b"1"
    note("calls", f"{now():.6f}", int(down))
    if down:
        raise ConnectionError("the dependency is down")


@app.job(name="member", retry=25, backoff=QUICK)
def member(i: int) -> int:
    note("member", os.getpid())
    time.sleep(0.03)
    return i


@app.job(name="collect", retry=25, backoff=QUICK)
def collect(outcomes: list[dict[str, Any]]) -> int:
    while ledger().get("ledger:go") != b"1":  # the test says when the kills are over
        time.sleep(0.02)
    ok = sum(1 for o in outcomes if o["state"] == "completed")
    note("callback", len(outcomes), ok, sum(o.get("result") or 0 for o in outcomes))
    return ok


@app.job(name="tick")
def tick() -> None:
    pass


app.every(1, tick, name="every-second")
