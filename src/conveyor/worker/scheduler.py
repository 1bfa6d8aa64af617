"""The scheduler duty: promotes due jobs from ``retry`` and ``schedule`` into their queues.

Every worker runs one. ``promote.lua`` removes and pushes each due job in one atomic step, so a
job is enqueued exactly once however many schedulers run, and none is lost if one crashes.
"""

from __future__ import annotations

from ..broker import AsyncBroker
from ..settings import SCHEDULER_BATCH
from .duty import Duty


class Scheduler(Duty):
    name = "scheduler"

    def __init__(self, broker: AsyncBroker, interval_s: float,
                 batch: int = SCHEDULER_BATCH) -> None:
        super().__init__(interval_s)
        self.broker = broker
        self.batch = batch
        self.promoted = 0

    async def tick(self) -> bool:
        more = False
        for source in (self.broker.keys.retry, self.broker.keys.schedule):
            moved, left = await self.broker.promote(source, self.batch)
            self.promoted += moved
            more = more or left
        return more
