"""RQ's benchmark jobs: plain functions; the worker forks a work horse per job (RQ's default)."""

from __future__ import annotations

import time
from typing import Any

import marks
from redis import Redis
from rq import Queue


def noop(i: int) -> None:
    marks.done()


def sleep(ms: int) -> None:
    time.sleep(ms / 1000)
    marks.done()


def stamp(sent: float) -> None:
    marks.stamp(sent)


def second(i: int) -> None:
    marks.started()
    time.sleep(1)
    marks.done()


FUNCS: dict[str, Any] = {"noop": noop, "sleep": sleep, "stamp": stamp, "second": second}
_queue: list[Queue] = []


def queue() -> Queue:
    if not _queue:
        _queue.append(Queue("default", connection=Redis.from_url(marks.BROKER_URL)))
    return _queue[0]


def enqueue(kind: str, arg: float) -> None:
    queue().enqueue(FUNCS[kind], arg)


def enqueue_bulk(kind: str, args: list[float]) -> None:
    queue().enqueue_many([Queue.prepare_data(FUNCS[kind], (a,)) for a in args])
