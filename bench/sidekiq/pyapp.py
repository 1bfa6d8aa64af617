"""Conveyor side of bench/sidekiq: ``BenchJob(payload, sleep_s)`` on queue "bench".

``BENCH_EXECUTOR`` picks the handler: ``asyncio`` (a coroutine, ``asyncio.sleep``) or ``thread``
(a plain function in the thread executor, ``time.sleep``, like Sidekiq's threads). Every job
records when it started and finished and its ``enqueued_at``; after ``BENCH_N`` jobs all records
go to the Redis list ``bench:result`` as one JSON document, as ``app.rb`` does for Sidekiq.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time

import redis

from conveyor import App, current_job

N = int(os.environ["BENCH_N"])
EXECUTOR = os.environ.get("BENCH_EXECUTOR", "asyncio")
app = App()
_redis = redis.Redis.from_url(os.environ["CONVEYOR_REDIS_URL"])
_lock = threading.Lock()
_records: list[tuple[float, float, float]] = []


def _record(started: float) -> None:
    entry = (started, time.time(), float(current_job().payload["enqueued_at"]))
    with _lock:
        _records.append(entry)
        done = list(_records) if len(_records) == N else None
    if done:
        _redis.rpush("bench:result", json.dumps(done))


if EXECUTOR == "asyncio":

    @app.job(name="BenchJob", queue="bench", retry=False)
    async def bench_job(payload: str, sleep_s: float = 0) -> None:
        started = time.time()
        if sleep_s:
            await asyncio.sleep(sleep_s)
        _record(started)

else:

    @app.job(name="BenchJob", queue="bench", retry=False, executor="thread")
    def bench_job_sync(payload: str, sleep_s: float = 0) -> None:
        started = time.time()
        if sleep_s:
            time.sleep(sleep_s)
        _record(started)
