"""Celery's benchmark tasks on the Redis broker, no result backend (Celery's default)."""

from __future__ import annotations

import time
from typing import Any

import marks
from celery import Celery

app = Celery("bench", broker=marks.BROKER_URL)
app.conf.broker_connection_retry_on_startup = True  # silences a deprecation warning only


@app.task(name="noop")
def noop(i: int) -> None:
    marks.done()


@app.task(name="sleep")
def sleep(ms: int) -> None:
    time.sleep(ms / 1000)
    marks.done()


@app.task(name="stamp")
def stamp(sent: float) -> None:
    marks.stamp(sent)


@app.task(name="second")
def second(i: int) -> None:
    marks.started()
    time.sleep(1)
    marks.done()


TASKS: dict[str, Any] = {"noop": noop, "sleep": sleep, "stamp": stamp, "second": second}


def enqueue(kind: str, arg: float) -> None:
    TASKS[kind].delay(arg)
