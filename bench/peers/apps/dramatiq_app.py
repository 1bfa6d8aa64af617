"""Dramatiq's benchmark actors on its Redis broker, default middleware."""

from __future__ import annotations

import time
from typing import Any

import dramatiq
import marks
from dramatiq.brokers.redis import RedisBroker

broker = RedisBroker(url=marks.BROKER_URL)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="default")
def noop(i: int) -> None:
    marks.done()


@dramatiq.actor(queue_name="default")
def sleep(ms: int) -> None:
    time.sleep(ms / 1000)
    marks.done()


@dramatiq.actor(queue_name="default")
def stamp(sent: float) -> None:
    marks.stamp(sent)


@dramatiq.actor(queue_name="default")
def second(i: int) -> None:
    marks.started()
    time.sleep(1)
    marks.done()


ACTORS: dict[str, Any] = {"noop": noop, "sleep": sleep, "stamp": stamp, "second": second}


def enqueue(kind: str, arg: float) -> None:
    ACTORS[kind].send(arg)
