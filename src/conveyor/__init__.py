"""Conveyor: background jobs, Sidekiq-compatible workers and data pipelines for Python.

    import conveyor

    app = conveyor.App()

    @app.job(retry=5)
    def send_email(to: str) -> None: ...

    send_email.enqueue("a@example.com")

Run ``conveyor worker --app myapp:app`` to process jobs; see ``docs/guide.md``.
"""

from .app import App, JobFunction, JobSpec, load_app
from .client import EnqueueRequest, JobHandle, JobStatus
from .context import JobContext, current_job
from .errors import (
    Cancelled,
    ConveyorError,
    JobFailed,
    JobNotFound,
    JobTimeout,
    Retry,
    SerializationError,
    UnknownJobType,
    WorkerLost,
)
from .flow import Breaker, ConcurrencyLimit, RateLimit, Unique, chain, group, immutable
from .retry import Backoff

__version__ = "0.1.0"

__all__ = [
    "App",
    "Backoff",
    "Breaker",
    "Cancelled",
    "ConcurrencyLimit",
    "ConveyorError",
    "EnqueueRequest",
    "JobContext",
    "JobFailed",
    "JobFunction",
    "JobHandle",
    "JobNotFound",
    "JobSpec",
    "JobStatus",
    "JobTimeout",
    "RateLimit",
    "Retry",
    "SerializationError",
    "Unique",
    "UnknownJobType",
    "WorkerLost",
    "__version__",
    "chain",
    "current_job",
    "group",
    "immutable",
    "load_app",
]
