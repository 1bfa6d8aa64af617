"""Observers of job runs: metrics, tracing and job logs hook in here, nowhere else.

An observer has ``job_finished(job, spec, outcome, result)`` (``result`` is completed, retry,
dead, discard or cancelled) and may have ``job_started(job, spec)`` (the run summary has none:
a call less per job); it may also have ``bind(worker)``, called once when the worker is built
(a metrics collector reads the worker's slots from it), and ``job_dead_lettered(queue, reason)``,
called when a job goes to the dead set without running
(``reason`` is ``MalformedJob`` or ``UnknownJobType``).
Both calls happen in the job's own task, so an observer may set context (a trace span) in
``job_started`` and undo it in ``job_finished``. An observer that raises is logged and
ignored: it never changes what happens to the job.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

log = logging.getLogger("conveyor.worker")


class JobObserver(Protocol):
    def job_finished(self, job: Any, spec: Any, outcome: Any, result: str) -> None: ...


class Observers:
    """Calls each observer in turn, shielding the worker from their errors."""

    def __init__(self, observers: Sequence[JobObserver], worker: Any) -> None:
        self.observers = list(observers)
        for o in self.observers:
            bind = getattr(o, "bind", None)
            if bind is not None:
                bind(worker)
        # bound methods, looked up once: these run for every job
        self._started = tuple((o, o.job_started) for o in self.observers
                              if hasattr(o, "job_started"))
        self.on_start = bool(self._started)  # False: the worker skips the started() call
        self._finished = tuple((o, o.job_finished) for o in reversed(self.observers))

    def __bool__(self) -> bool:
        return bool(self.observers)

    def started(self, job: Any, spec: Any) -> None:
        for o, hook in self._started:
            try:
                hook(job, spec)
            except Exception:
                log.exception("observer %r failed on job_started", o)

    def dead_lettered(self, queue: str, reason: str) -> None:
        for o in self.observers:
            hook = getattr(o, "job_dead_lettered", None)
            if hook is None:
                continue
            try:
                hook(queue, reason)
            except Exception:
                log.exception("observer %r failed on job_dead_lettered", o)

    def finished(self, job: Any, spec: Any, outcome: Any, result: str) -> None:
        for o, hook in self._finished:
            try:
                hook(job, spec, outcome, result)
            except Exception:
                log.exception("observer %r failed on job_finished", o)
