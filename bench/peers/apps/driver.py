"""The client side of a benchmark, run with a peer's own interpreter: ``python driver.py APP CMD``.

Commands (each prints one JSON object on stdout):

* ``enqueue --kind K --n N --mode single|bulk|fill``: enqueue N jobs of kind K with the peer's
  client and time it. ``single`` awaits each enqueue before the next; ``bulk`` uses the peer's
  bulk API in chunks of BULK_CHUNK; ``fill`` is the fastest way to prefill a queue for a drain
  (bulk where offered, else concurrent enqueues for async clients, else single).
* ``latency --samples S --gap-ms G``: with a worker running and idle, enqueue one ``stamp`` job
  every G ms (after the previous one ran) and collect the pickup latency each job measured.

APP is a module in this folder exposing ``enqueue(kind, arg)`` (sync or async), optionally
``enqueue_bulk(kind, args)``, ``setup()`` and ``teardown()``. Stdlib + redis-py only, so it runs
in every peer's venv.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import time
from collections.abc import Callable
from typing import Any

import marks

BULK_CHUNK = 1000  # jobs per bulk call (Sidekiq's recommended push_bulk batch)
FILL_CONCURRENCY = 200  # concurrent enqueues when an async client has no bulk API
WARMUP_TIMEOUT_S = 120.0  # a worker may take this long to start
SAMPLE_TIMEOUT_S = 30.0


class Peer:
    """Calls the app module's functions the same way whether they are sync or async."""

    def __init__(self, module: Any) -> None:
        self.m = module
        self.loop = asyncio.new_event_loop()

    def call(self, fn: Callable[..., Any] | None, *args: Any) -> Any:
        if fn is None:
            return None
        out = fn(*args)
        return self.loop.run_until_complete(out) if inspect.isawaitable(out) else out

    def setup(self) -> None:
        self.call(getattr(self.m, "setup", None))

    def close(self) -> None:
        self.call(getattr(self.m, "teardown", None))
        self.loop.close()

    def single(self, kind: str, args: list[float]) -> None:
        fn = self.m.enqueue
        if inspect.iscoroutinefunction(fn):
            async def run() -> None:
                for a in args:
                    await fn(kind, a)
            self.loop.run_until_complete(run())
        else:
            for a in args:
                fn(kind, a)

    def bulk(self, kind: str, args: list[float]) -> bool:
        fn = getattr(self.m, "enqueue_bulk", None)
        if fn is None:
            return False
        for i in range(0, len(args), BULK_CHUNK):
            self.call(fn, kind, args[i : i + BULK_CHUNK])
        return True

    def fill(self, kind: str, args: list[float]) -> None:
        if self.bulk(kind, args):
            return
        fn = self.m.enqueue
        if not inspect.iscoroutinefunction(fn):
            self.single(kind, args)
            return

        async def run() -> None:
            for i in range(0, len(args), FILL_CONCURRENCY):
                await asyncio.gather(*(fn(kind, a) for a in args[i : i + FILL_CONCURRENCY]))
        self.loop.run_until_complete(run())


def enqueue(peer: Peer, kind: str, n: int, mode: str) -> dict[str, Any]:
    args: list[float] = [10] * n if kind == "sleep" else list(range(n))
    started = time.perf_counter()
    if mode == "bulk":
        if not peer.bulk(kind, args):
            return {"skipped": "no bulk enqueue API"}
    elif mode == "fill":
        peer.fill(kind, args)
    else:
        peer.single(kind, args)
    seconds = time.perf_counter() - started
    return {"n": n, "seconds": seconds, "per_s": n / seconds}


def latency(peer: Peer, samples: int, gap_ms: float) -> dict[str, Any]:
    r = marks.sync_client()
    r.delete(marks.LATENCIES)
    peer.single("stamp", [time.time()])  # warm-up: waits for the worker to be up
    if r.blpop([marks.LATENCIES], timeout=WARMUP_TIMEOUT_S) is None:
        return {"error": "the worker never ran the warm-up job"}
    out: list[float] = []
    for _ in range(samples):
        time.sleep(gap_ms / 1000)
        peer.single("stamp", [time.time()])
        got = r.blpop([marks.LATENCIES], timeout=SAMPLE_TIMEOUT_S)
        if got is None:
            return {"error": f"no pickup within {SAMPLE_TIMEOUT_S}s", "latencies_ms": out}
        out.append(float(got[1]) * 1000)
    return {"latencies_ms": out}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("app")
    ap.add_argument("command", choices=["enqueue", "latency"])
    ap.add_argument("--kind", default="noop")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--mode", choices=["single", "bulk", "fill"], default="single")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--gap-ms", type=float, default=50.0)
    a = ap.parse_args()
    peer = Peer(importlib.import_module(a.app))
    peer.setup()
    try:
        if a.command == "enqueue":
            result = enqueue(peer, a.kind, a.n, a.mode)
        else:
            result = latency(peer, a.samples, a.gap_ms)
    finally:
        peer.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
