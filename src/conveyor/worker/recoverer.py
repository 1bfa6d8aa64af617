"""The recoverer duty: requeues the jobs of workers whose lease expired, and buries poison pills.

Every worker runs one, so recovery does not wait for a restart (Sidekiq Pro's weakness). A job
whose worker was lost more than ``max_recoveries`` times lands in the quarantine list from the
Lua side; this duty rewrites each such entry with its error fields (in Python, to keep every
byte of its arguments) and moves it into the dead set with ``bury.lua``.
"""

from __future__ import annotations

import logging

from ..broker import AsyncBroker
from ..deadletter import dead_entry
from .duty import Duty

log = logging.getLogger("conveyor.recoverer")
QUARANTINE_BATCH = 100


class Recoverer(Duty):
    name = "recoverer"

    def __init__(self, broker: AsyncBroker, interval_s: float) -> None:
        super().__init__(interval_s)
        self.broker = broker
        self.recovered_jobs = 0
        self.buried = 0

    async def tick(self) -> bool:
        workers, jobs, quarantined = await self.broker.recover_expired()
        if workers:
            log.warning("recovered %d job(s) from %d lost worker(s); %d quarantined",
                        jobs, workers, quarantined)
        self.recovered_jobs += jobs
        entries = await self.broker.redis.lrange(self.broker.keys.quarantine, 0,
                                                 QUARANTINE_BATCH - 1)
        for entry in entries:
            entry = bytes(entry)
            reason, _, raw = entry.partition(b"\n")
            dead_raw, jid = dead_entry(raw, "WorkerLost", reason.decode("utf-8", "replace"))
            if await self.broker.bury(entry, dead_raw, jid, "WorkerLost",
                                      reason.decode("utf-8", "replace")):
                self.buried += 1
        return len(entries) == QUARANTINE_BATCH or workers == 50
