"""What a running job can see and do about itself: ``conveyor.current_job()``.

Job code calls ``current_job()`` to read its id, type, queue and attempt, to report progress
(stored in the job's status record, where clients, the CLI and the API read it) and to check
whether it was cancelled (threads cannot be interrupted, so long loops should look).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .executors import current_task_context
from .job import dumps


@dataclass(slots=True)
class JobContext:
    """The running job's identity and its channel back to its status record."""

    jid: str
    name: str
    queue: str
    attempt: int
    payload: dict[str, Any] = field(repr=False, default_factory=dict)
    cancelled: bool = False
    _report: Callable[[str, dict[str, Any]], None] | None = field(default=None, repr=False)

    def progress(self, fraction: float, message: str = "", **meta: Any) -> None:
        """Record progress (0.0 to 1.0) with an optional message and JSON metadata."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress fraction must be between 0 and 1, got {fraction}")
        record = {"fraction": fraction, "message": message, **({"meta": meta} if meta else {})}
        if self._report is not None:
            self._report(self.jid, {"progress": dumps(record)})


def current_job() -> JobContext:
    """The context of the job running in this task or thread; RuntimeError outside a job."""
    ctx = current_task_context.get()
    if not isinstance(ctx, JobContext):
        raise RuntimeError("current_job() called outside a running Conveyor job")
    return ctx
