"""The heartbeat: renews the worker's lease and publishes it in Sidekiq's process format.

It runs in its own thread with its own (sync) Redis connection, so a job that blocks the event
loop cannot starve it: the lease stays alive while the process is alive. Each beat:

1. renews the lease (``renew.lua``); if the lease is gone, the worker was presumed dead and its
   jobs requeued, so the worker is told it is fenced;
2. flushes the processed/failed counters into Sidekiq's ``stat:*`` keys (lifetime and UTC daily);
3. writes the process hash (``info``, ``busy``, ``beat``, ``quiet``, ``rss``, ``rtt_us``, plus
   Conveyor's ``summary`` of recent runs, which Sidekiq ignores; see ``conveyor.latency``) and
   the busy-job hashes under both Sidekiq generations' names, with Sidekiq's 60 s TTL;
4. pops one signal pushed by Sidekiq's Web UI (TSTP, TERM, TTIN) and hands it to the worker;
5. asks Redis which running jobs were cancelled (``cancelled.lua``: one call however many run)
   and tells the worker.

The busy-job hash is rewritten whole on each beat (Sidekiq's readers expect exactly the running
jobs in it) with one HSET, then COPYed to the other generation's name; each job's entry is
encoded once and reused while it runs. At 10,000 jobs in flight this beat used to send 30,000
commands every two seconds, from a thread that shares the GIL with the event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psutil
import redis

from ..broker import SyncBroker
from ..errors import BrokerError
from ..job import dumps
from ..settings import PROCESS_TTL_S

log = logging.getLogger("conveyor.heartbeat")
DAILY_STAT_TTL_S = 5 * 365 * 24 * 3600  # Sidekiq keeps daily counters five years


@dataclass(slots=True)
class Counters:
    """Processed/failed counts for Sidekiq's stats, without a lock: the worker's loop only adds
    to the totals (once per job finished), the heartbeat thread only moves its marks of what
    it has published, and each side reads whole ints. A job counted between the two reads of
    :meth:`take` is published a beat later."""

    processed: int = 0
    failed: int = 0
    taken_processed: int = 0
    taken_failed: int = 0

    def add(self, processed: int, failed: int) -> None:
        self.processed += processed
        self.failed += failed

    def take(self) -> tuple[int, int]:
        """What was added since the last take (the heartbeat thread)."""
        p, f = self.processed, self.failed
        taken = p - self.taken_processed, f - self.taken_failed
        self.taken_processed, self.taken_failed = p, f
        return taken

    def untake(self, processed: int, failed: int) -> None:
        """Give back what a take returned, to publish it with the next one (the heartbeat)."""
        self.taken_processed -= processed
        self.taken_failed -= failed


@dataclass
class BeatCallbacks:
    """How the heartbeat reaches the worker (each is called from the heartbeat thread)."""

    busy: Callable[[], dict[str, tuple[str, bytes, int]]]
    quiet: Callable[[], bool]
    on_fenced: Callable[[], None]
    on_signal: Callable[[str], None]
    on_cancelled: Callable[[list[str]], None]
    summary: Callable[[], dict[str, Any]] = dict  # recent runs (worker/summary.py)


class Heartbeat:
    """A thread that beats every ``interval_s`` until stopped."""

    def __init__(self, broker: SyncBroker, identity: str, info: dict[str, Any],
                 counters: Counters, callbacks: BeatCallbacks, interval_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.broker = broker
        self.identity = identity
        self.info = info
        self.counters = counters
        self.cb = callbacks
        self.interval_s = interval_s
        self.clock = clock
        self.stop_event = threading.Event()
        self._thread = threading.Thread(target=self.run, name="conveyor-heartbeat", daemon=True)
        self._proc = psutil.Process()
        self._entries: dict[str, bytes] = {}  # jid -> its busy-job entry, while it runs
        self.beats = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self.stop_event.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.beat()
            except (redis.RedisError, OSError, BrokerError) as exc:
                log.warning("heartbeat failed (will retry): %s", exc)
            self.stop_event.wait(self.interval_s)

    def beat(self) -> None:
        if not self.broker.renew(self.identity):
            log.warning("worker %s lost its lease; its jobs were requeued", self.identity)
            self.cb.on_fenced()
        busy = self.cb.busy()
        signal = self._publish(busy)
        if signal:
            self.cb.on_signal(signal)
        if busy:
            cancelled = self.broker.cancelled(list(busy))
            if cancelled:
                self.cb.on_cancelled(cancelled)
        self.beats += 1

    def _publish(self, busy: dict[str, tuple[str, bytes, int]]) -> str | None:
        k = self.broker.keys
        pipe = self.broker.redis.pipeline(transaction=True)
        processed, failed = self._add_stats(pipe)
        work, other_work = k.process_work(self.identity)
        pipe.unlink(work, other_work)
        if busy:
            pipe.hset(work, mapping=self._work_entries(busy))
            pipe.expire(work, PROCESS_TTL_S)
            pipe.copy(work, other_work, replace=True)  # with its TTL
        started = time.perf_counter()
        try:
            pipe.execute()
        except redis.RedisError:
            self.counters.untake(processed, failed)  # publish them with the next beat
            raise
        rtt_us = int((time.perf_counter() - started) * 1e6)
        pipe = self.broker.redis.pipeline(transaction=True)
        pipe.sadd(k.processes, self.identity)
        pipe.hset(k.process(self.identity), mapping={
            "info": dumps(self.info),
            "busy": len(busy),
            "beat": f"{self.clock():.6f}",
            "quiet": "true" if self.cb.quiet() else "false",
            "rss": self._proc.memory_info().rss // 1024,
            "rtt_us": rtt_us,
            "summary": dumps(self.cb.summary()),
        })
        pipe.expire(k.process(self.identity), PROCESS_TTL_S)
        pipe.rpop(k.process_signals(self.identity))
        reply = pipe.execute()
        signal = reply[-1]
        return signal.decode() if signal else None

    def _work_entries(self, busy: dict[str, tuple[str, bytes, int]]) -> dict[str, bytes]:
        """Sidekiq's busy-job entries, each encoded once while its job runs."""
        old = self._entries
        self._entries = {jid: old.get(jid) or dumps({"queue": queue, "run_at": run_at,
                                                     "payload": raw.decode("utf-8", "replace")})
                         for jid, (queue, raw, run_at) in busy.items()}
        return self._entries

    def _add_stats(self, pipe: redis.client.Pipeline) -> tuple[int, int]:
        """Queue Sidekiq's processed/failed stats (totals and today's) on ``pipe``; returns the
        counts taken, to give back if the pipeline fails."""
        k = self.broker.keys
        processed, failed = self.counters.take()
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        for name, n in (("processed", processed), ("failed", failed)):
            pipe.incrby(k.stat(name), n)
            pipe.incrby(k.stat(name, day), n)
            pipe.expire(k.stat(name, day), DAILY_STAT_TTL_S)
        return processed, failed

    def unregister(self) -> None:
        """Sidekiq's clean exit: leave the process set and drop the busy-job hashes."""
        k = self.broker.keys
        pipe = self.broker.redis.pipeline(transaction=True)
        self._add_stats(pipe)
        pipe.srem(k.processes, self.identity)
        pipe.unlink(*k.process_work(self.identity))
        pipe.execute()
