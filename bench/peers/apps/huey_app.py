"""Huey's benchmark tasks on RedisHuey (blocking reads, results stored unless None)."""

from __future__ import annotations

import time
from typing import Any

import marks
from huey import RedisHuey

huey = RedisHuey("bench", url=marks.BROKER_URL)


@huey.task()
def noop(i: int) -> None:
    marks.done()


@huey.task()
def sleep(ms: int) -> None:
    time.sleep(ms / 1000)
    marks.done()


@huey.task()
def stamp(sent: float) -> None:
    marks.stamp(sent)


@huey.task()
def second(i: int) -> None:
    marks.started()
    time.sleep(1)
    marks.done()


TASKS: dict[str, Any] = {"noop": noop, "sleep": sleep, "stamp": stamp, "second": second}


def enqueue(kind: str, arg: float) -> None:
    TASKS[kind](arg)
