"""The shape every background duty of a worker shares: a loop on an interval with a stop event.

A duty's ``tick()`` does one round of work and returns True when it should run again at once
(work was left over). Errors are logged and the loop goes on: a Redis outage must not kill a
worker's duties. Intervals get +-20% jitter so many workers do not beat in step.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import random

log = logging.getLogger("conveyor.worker")
JITTER = 0.2


class Duty(abc.ABC):
    name = "duty"

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.stop_event = asyncio.Event()
        self.ticks = 0

    @abc.abstractmethod
    async def tick(self) -> bool:
        """One round of work; True to run again immediately."""

    async def run(self) -> None:
        while not self.stop_event.is_set():
            again = False
            try:
                again = await self.tick()
                self.ticks += 1
            except Exception as exc:  # a duty must outlive Redis outages and bad data
                log.warning("%s: %s: %s", self.name, type(exc).__name__, exc)
            if again:
                await asyncio.sleep(0)
                continue
            pause = self.interval_s * random.uniform(1 - JITTER, 1 + JITTER)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), pause)

    def stop(self) -> None:
        self.stop_event.set()
