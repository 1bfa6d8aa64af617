"""OpenTelemetry tracing (optional extra ``conveyor[otel]``): an enqueue span and a run span.

:func:`enqueue_span` opens a PRODUCER span around an enqueue and yields the W3C trace context
(``traceparent``, plus ``tracestate`` when set) to store in the job payload, where it travels
through Redis with the job (Sidekiq ignores keys it does not know). On the worker,
:class:`TracingObserver` opens a CONSUMER span for each execution whose parent is that context,
so one trace shows the request that enqueued the job, the wait and the run; it is the current
span while the job code runs, so spans the job makes are its children. Retries make one run
span each, all children of the same enqueue span.

The W3C propagator is used directly (not the globally configured one) because the payload
field is defined as W3C ``traceparent``. Without the opentelemetry packages every function here
does nothing and costs nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # the otel extra is not installed
    trace = None  # type: ignore[assignment]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
TRACER_NAME = "conveyor"


def available() -> bool:
    return trace is not None


def _tracer(provider: Any = None) -> Any:
    return trace.get_tracer(TRACER_NAME, tracer_provider=provider)


@contextmanager
def enqueue_span(job_type: str, queue: str, provider: Any = None) -> Iterator[dict[str, str]]:
    """A PRODUCER span around an enqueue; yields the fields to add to the job payload."""
    if trace is None:
        yield {}
        return
    with _tracer(provider).start_as_current_span(
            f"enqueue {job_type}", kind=SpanKind.PRODUCER,
            attributes={"messaging.system": "conveyor", "messaging.operation.type": "send",
                        "messaging.destination.name": queue, "conveyor.job.type": job_type}):
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier)
        yield carrier


def extract(payload: Mapping[str, Any]) -> Any:
    """The OpenTelemetry context carried by a job payload (an empty one if none)."""
    carrier = {k: str(payload[k]) for k in (TRACEPARENT, TRACESTATE) if payload.get(k)}
    return TraceContextTextMapPropagator().extract(carrier)


class TracingObserver:
    """A worker observer: one CONSUMER span per execution, child of the enqueue span."""

    def __init__(self, provider: Any = None) -> None:
        self.provider = provider
        self._open: dict[str, tuple[Any, Any]] = {}

    def job_started(self, job: Any, spec: Any) -> None:
        if trace is None:
            return
        span = _tracer(self.provider).start_span(
            f"run {job.name}", context=extract(job.data), kind=SpanKind.CONSUMER,
            attributes={"messaging.system": "conveyor", "messaging.operation.type": "process",
                        "messaging.destination.name": job.queue,
                        "messaging.message.id": job.jid, "conveyor.job.type": job.name,
                        "conveyor.job.attempt": job.attempt})
        token = otel_context.attach(trace.set_span_in_context(span))
        self._open[job.token or job.jid] = (span, token)

    def job_finished(self, job: Any, spec: Any, outcome: Any, result: str) -> None:
        opened = self._open.pop(job.token or job.jid, None)
        if opened is None:
            return
        span, token = opened
        span.set_attribute("conveyor.job.outcome", result)
        if not outcome.ok:
            if outcome.error is not None:
                span.record_exception(outcome.error)
            span.set_status(Status(StatusCode.ERROR, f"{outcome.error_class}: "
                                                     f"{outcome.message[:200]}"))
        span.end()
        with contextlib.suppress(ValueError):  # finished in another context: nothing to undo
            otel_context.detach(token)
