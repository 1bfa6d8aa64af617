"""Every exception Conveyor raises, in one place.

The hierarchy::

    ConveyorError
    ├── ConfigurationError          bad settings, wrong --app, unknown executor
    ├── BrokerError                 Redis unreachable or answering with an error
    │   └── FencedError             this worker's lease was taken over; its acks are refused
    ├── SerializationError          arguments or results that are not JSON
    ├── JobError
    │   ├── UnknownJobType          a job type that no handler is registered for
    │   ├── MalformedJob            a payload in Redis that is not a valid job
    │   ├── JobNotFound             no job with that id
    │   └── JobFailed               waited for a result, but the job ended dead/failed/cancelled
    ├── JobControl                  raised by job code to steer its own fate (not failures)
    │   ├── Retry                   retry after a given delay
    │   └── Cancelled               the job was cancelled while it ran
    ├── ExecutorError               failures of the place a job ran in, not of the job code
    │   ├── JobTimeout              the job ran past its timeout
    │   ├── WorkerLost              the process running the job died
    │   ├── ExecutorClosed          work submitted to a stopped executor
    │   └── CircuitOpen             not called: the circuit breaker is open after failures
    └── PipelineError
        ├── StageFailed             a stage raised; wraps the original error
        ├── PipelineDefinitionError bad stage graph (cycles, unknown or duplicate names)
        └── ChannelClosed           put/get on a closed channel

Messages say what was wrong and what to do about it.
"""

from __future__ import annotations

from collections.abc import Iterable


class ConveyorError(Exception):
    """Base class of every Conveyor error."""


class ConfigurationError(ConveyorError):
    """Settings, flags or an ``--app`` path that cannot work."""


class BrokerError(ConveyorError):
    """Redis could not be reached or answered with an error."""


class NotDurable(BrokerError):
    """``wait_aof_s`` is set and Redis did not confirm in time that it wrote the jobs to its AOF.
    The jobs were enqueued and will run, but a Redis crash right now could lose them."""


class FencedError(BrokerError):
    """This worker lost its lease: another worker recovered its jobs, so its acks are refused."""


class SerializationError(ConveyorError):
    """A value that cannot travel as JSON."""


class JobError(ConveyorError):
    """Problems with a job rather than with the system."""


class UnknownJobType(JobError):
    """No handler is registered under this job type."""

    MAX_LISTED = 20

    def __init__(self, name: str, registered: Iterable[str] = ()) -> None:
        names = sorted(registered)
        shown = ", ".join(names[: self.MAX_LISTED]) or "(none)"
        if len(names) > self.MAX_LISTED:
            shown += f", ... ({len(names) - self.MAX_LISTED} more)"
        super().__init__(f"job type {name!r} is not registered; registered types: {shown}")
        self.name = name


class MalformedJob(JobError):
    """A payload found in Redis that is not a valid job."""


class JobNotFound(JobError):
    """No job with this id is known (it may have expired)."""


class JobFailed(JobError):
    """A job whose result was awaited ended without completing."""

    def __init__(self, status: object) -> None:
        state = getattr(status, "state", "?")
        err = getattr(status, "error_class", "")
        msg = getattr(status, "error_message", "")
        detail = f": {err}: {msg}" if err else ""
        super().__init__(f"job {getattr(status, 'jid', '?')} ended {state}{detail}")
        self.status = status


class JobControl(ConveyorError):
    """Raised by job code to steer what happens to the job."""


class Retry(JobControl):
    """Raise from a job to retry it after ``delay`` seconds (counts as an attempt)."""

    def __init__(self, delay: float | None = None, reason: str = "") -> None:
        super().__init__(reason or (f"retry requested in {delay}s" if delay else "retry requested"))
        self.delay = delay


class Cancelled(JobControl):
    """The job was cancelled while it ran."""


class ExecutorError(ConveyorError):
    """The place the job ran in failed, not the job code itself."""


class JobTimeout(ExecutorError):
    """The job ran longer than its timeout."""


class WorkerLost(ExecutorError):
    """The process running the job died (killed, crashed or ran out of memory)."""


class ExecutorClosed(ExecutorError):
    """Work was submitted to an executor that is stopping or stopped."""


class CircuitOpen(ExecutorError):
    """The call was not made: its circuit breaker is open after repeated failures."""


class PipelineError(ConveyorError):
    """Errors of the pipeline engine."""


class StageFailed(PipelineError):
    """A stage raised; ``__cause__`` holds the original error."""

    def __init__(self, stage: str, error: BaseException) -> None:
        super().__init__(f"stage {stage!r} failed: {type(error).__name__}: {error}")
        self.stage = stage
        self.error = error


class PipelineDefinitionError(PipelineError):
    """The stage graph is invalid: a cycle, an unknown or a duplicate stage name."""


class ChannelClosed(PipelineError):
    """A put or get on a channel that was closed."""
