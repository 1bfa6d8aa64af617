"""OpenTelemetry tracing (optional extra ``conveyor[otel]``): an enqueue span and a run span.

Tracing is on when the opentelemetry packages are installed and the application has set a
tracer provider (``trace.set_tracer_provider(...)``, or the SDK's environment configuration);
with only the API's default proxy provider, it is off. While it is on, every enqueue through the
client (``App.enqueue``, ``fn.enqueue``, ``enqueue_many`` and their async twins, the REST API)
gets a PRODUCER span ``enqueue <type>``: :func:`enqueue_spans` opens one per job, as siblings
under the caller's current span, stores each one's W3C trace context (``traceparent``, plus
``tracestate`` when set) in the job payload, where it travels through Redis with the job
(Sidekiq ignores keys it does not know), and ends them when the push returned (or failed, with
the error recorded). A request that already carries a ``traceparent`` in ``extra`` (from
:func:`enqueue_span`, or from another producer) is left as it is. On a worker started with
``--trace``, :class:`TracingObserver` opens a CONSUMER span for each execution whose parent is
that context, so one trace shows the request that enqueued the job, the wait and the run; it is
the current span while the job code runs, so spans the job makes are its children. Retries make
one run span each, all children of the same enqueue span.

The W3C propagator is used directly (not the globally configured one) because the payload
field is defined as W3C ``traceparent``. Without the opentelemetry packages every function here
does nothing and costs nothing; with them but no tracer provider set, an enqueue costs one
provider lookup and makes no span.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.environment_variables import OTEL_PYTHON_TRACER_PROVIDER
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _UNSET_PROVIDERS: tuple[type, ...] = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
    # get_tracer_provider() looks up an environment variable on every call, which costs more
    # than encoding a job; while no provider is set in code or named in the environment (read
    # once, at import, like the rest of OpenTelemetry's configuration), enabled() reads the
    # global that set_tracer_provider() fills instead. Without that global (another
    # OpenTelemetry layout) it falls back to the full lookup.
    _FAST_CHECK = hasattr(trace, "_TRACER_PROVIDER") and (
        OTEL_PYTHON_TRACER_PROVIDER not in os.environ)
except ImportError:  # the otel extra is not installed
    trace = None  # type: ignore[assignment]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
TRACER_NAME = "conveyor"
_OFF: AbstractContextManager[None] = contextlib.nullcontext()


def available() -> bool:
    return trace is not None


def enabled() -> bool:
    """Whether enqueues make spans: the packages are installed and a tracer provider is set."""
    if trace is None:
        return False
    if _FAST_CHECK and trace._TRACER_PROVIDER is None:
        return False
    return not isinstance(trace.get_tracer_provider(), _UNSET_PROVIDERS)


def _producer_attributes(job_type: str, queue: str) -> dict[str, str]:
    return {"messaging.system": "conveyor", "messaging.operation.type": "send",
            "messaging.destination.name": queue, "conveyor.job.type": job_type}


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
            attributes=_producer_attributes(job_type, queue)):
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier)
        yield carrier


class EnqueueSpans:
    """The PRODUCER spans of one push (see the module docstring); used by the client."""

    def __init__(self, provider: Any = None) -> None:
        self.tracer = _tracer(provider)
        self.spans: list[Any] = []

    def carrier(self, job_type: str, queue: str, jid: str) -> dict[str, str]:
        """Open the span of one job; returns the fields to add to its payload."""
        attributes = {**_producer_attributes(job_type, queue), "messaging.message.id": jid}
        span = self.tracer.start_span(f"enqueue {job_type}", kind=SpanKind.PRODUCER,
                                      attributes=attributes)
        self.spans.append(span)
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier, context=trace.set_span_in_context(span))
        return carrier

    def __enter__(self) -> EnqueueSpans:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for span in self.spans:
            if exc is not None:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:200]))
            span.end()


def enqueue_spans(provider: Any = None) -> AbstractContextManager[EnqueueSpans | None]:
    """The spans of one push while tracing is :func:`enabled` (or a ``provider`` is given);
    otherwise a shared do-nothing context that yields None."""
    if trace is None or (provider is None and not enabled()):
        return _OFF
    return EnqueueSpans(provider)


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
