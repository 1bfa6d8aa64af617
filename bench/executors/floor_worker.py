"""The floor of ``worker_10k.py``: the least a Python process can do to run its jobs.

    python floor_worker.py CONCURRENCY     # run by worker_10k.py --floor, cwd bench/peers/apps

It pops the prefilled Conveyor jobs from ``queue:default`` 1,000 at a time (``LPOP`` with a
count, on the benchmark's Redis, hiredis and uvloop as the worker has them), decodes each with
orjson and starts the same body as the harness's ``second`` job (mark the first start, sleep
1 s, count itself) in a task of its own, at most CONCURRENCY at once. Nothing else: no lease,
no in-flight record, no acknowledgement, no retry, no timeout, no job context, no stats. A job
system on this machine cannot do better than this; its percentage of ideal is the ceiling for
Conveyor's figure in the same run.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import marks  # bench/peers/apps, the cwd the harness starts workers in
import orjson
import redis.asyncio as aioredis
import uvloop

QUEUE = "queue:default"
BATCH = 1000
IDLE_S = 0.001


async def second(i: int) -> None:  # the body of conveyor_app's ``second`` job
    await marks.astarted()
    await asyncio.sleep(1)
    await marks.adone()


async def main(concurrency: int) -> None:
    r = aioredis.Redis.from_url(marks.BROKER_URL, socket_timeout=None)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    running: set[asyncio.Task[None]] = set()
    while not stop.is_set():
        free = concurrency - len(running)
        batch = await r.lpop(QUEUE, min(free, BATCH)) if free else None
        if not batch:
            await asyncio.sleep(IDLE_S)
            continue
        for raw in batch:
            t = loop.create_task(second(*orjson.loads(raw)["args"]))
            running.add(t)
            t.add_done_callback(running.discard)
    await r.aclose()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
