"""OpenTelemetry spans (enqueue and run, linked by the payload's W3C traceparent) checked with
the SDK's in-memory exporter, and the structured JSON logs with redaction.

The module sets the SDK's tracer provider globally (as an application would), so while its
tests run every enqueue in this process is traced; the provider is unset again afterwards, so
the rest of the suite enqueues untraced. Tests that need tracing off run in a subprocess."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from requires import require_module

otel_sdk = require_module("opentelemetry.sdk.trace", "pip install -e '.[otel]'")
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402
from opentelemetry.util._once import Once  # noqa: E402

from conveyor import App, tracing  # noqa: E402
from conveyor.admin import Inspector  # noqa: E402
from conveyor.client import EnqueueRequest  # noqa: E402
from conveyor.errors import BrokerError  # noqa: E402
from conveyor.logs import (  # noqa: E402
    JobContextFilter,
    JsonFormatter,
    LoggingObserver,
    configure_logging,
    redact,
)
from conveyor.testing import drain  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent / "api"))
from api_helpers import ADMIN, WorkerThread, client, make_app, running_api, wait_until  # noqa: E402

EXPORTER = InMemorySpanExporter()
PROVIDER = otel_sdk.TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))


@pytest.fixture(scope="module", autouse=True)
def _global_provider() -> Iterator[None]:
    """Enqueue spans (client and API) use the global provider: set it for this module only.

    OpenTelemetry lets a process set it once; the reset afterwards touches the same two globals
    as OpenTelemetry's own test utilities (``opentelemetry.test.globals_test``), which are not
    installed here.
    """
    trace.set_tracer_provider(PROVIDER)
    yield
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
    assert not tracing.enabled()


@pytest.fixture(autouse=True)
def _clean_exporter() -> None:
    EXPORTER.clear()


def _spans(name: str) -> list[Any]:
    return [s for s in EXPORTER.get_finished_spans() if s.name == name]


def _traceparent_of(span: Any) -> str:
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def _traced_app(redis_url: str) -> App:
    app = make_app(redis_url)

    @app.job(name="nested")
    def nested() -> str:
        with trace.get_tracer("job-code").start_as_current_span("inside the job"):
            return "ok"

    return app


def test_api_submit_makes_an_enqueue_span_and_carries_it_in_the_payload(redis_url: str) -> None:
    app = make_app(redis_url)
    with running_api(app) as server, client(server, ADMIN) as c:
        job_id = c.post("/api/v1/jobs", json={"type": "echo", "args": [1]}).json()["job_id"]
    (span,) = _spans("enqueue echo")
    assert span.kind == SpanKind.PRODUCER
    assert span.attributes["messaging.destination.name"] == "default"
    (queued,) = Inspector(app.client.sync).queue_jobs("default")
    assert queued.jid == job_id
    assert json.loads(queued.raw)["traceparent"] == _traceparent_of(span)
    app.close()


def test_run_span_is_a_child_of_the_enqueue_span(redis_url: str) -> None:
    app = _traced_app(redis_url)
    with tracing.enqueue_span("nested", "default") as carrier:
        handle = app.enqueue("nested", extra=carrier)
    with tracing.enqueue_span("boom", "default") as carrier:
        failing = app.enqueue("boom", args=["card declined"], extra=carrier)
    automatic = app.enqueue("echo", args=[1])  # no enqueue_span: the client opens one itself
    with WorkerThread(app, concurrency=2, observers=[tracing.TracingObserver()]):
        assert handle.result(timeout=10) == "ok"
        wait_until(lambda: len(_spans("run boom")) == 1 and len(_spans("run echo")) == 1,
                   what="three run spans")
    (enqueue,) = _spans("enqueue nested")
    (run,) = _spans("run nested")
    assert run.kind == SpanKind.CONSUMER
    assert run.context.trace_id == enqueue.context.trace_id
    assert run.parent.span_id == enqueue.context.span_id
    assert run.attributes["messaging.message.id"] == handle.id
    assert run.attributes["conveyor.job.outcome"] == "completed"
    (inside,) = _spans("inside the job")
    assert inside.parent.span_id == run.context.span_id, "job code's spans are children"
    (boom,) = _spans("run boom")
    assert boom.status.status_code == StatusCode.ERROR
    assert boom.attributes["conveyor.job.outcome"] == "dead"
    assert [e.name for e in boom.events] == ["exception"]
    assert boom.attributes["messaging.message.id"] == failing.id
    (plain,) = _spans("run echo")
    (plain_enqueue,) = _spans("enqueue echo")
    assert plain_enqueue.attributes["messaging.message.id"] == automatic.id
    assert plain.parent.span_id == plain_enqueue.context.span_id
    assert plain.attributes["messaging.message.id"] == automatic.id
    app.close()


def _payload(app: App, queue: str = "default") -> dict[str, dict[str, Any]]:
    return {q.jid: json.loads(q.raw) for q in Inspector(app.client.sync).queue_jobs(queue)}


async def _aenqueue_and_close(app: App) -> Any:
    try:
        return await app.aenqueue("echo", args=[9])
    finally:
        await app.aclose()  # the async pool belongs to this loop


def test_plain_enqueues_make_enqueue_spans_and_carry_traceparent(redis_url: str) -> None:
    app = make_app(redis_url)

    @app.job(name="mail", queue="mail")
    def mail(to: str) -> None: ...

    with trace.get_tracer("caller").start_as_current_span("request") as request:
        one = app.enqueue("echo", args=[1])
        two = mail.enqueue("a@example.org")
        batch = app.enqueue_many([EnqueueRequest("echo", args=[i]) for i in range(3)])
        later = mail.enqueue_in(60, "b@example.org")
        async_one = asyncio.run(_aenqueue_and_close(app))
    ids = [one.id, two.id, *(h.id for h in batch), later.id, async_one.id]
    spans = {s.attributes["messaging.message.id"]: s for s in EXPORTER.get_finished_spans()
             if s.name.startswith("enqueue ")}
    assert sorted(spans) == sorted(ids), "one enqueue span per job"
    for span in spans.values():
        assert span.kind == SpanKind.PRODUCER
        assert span.parent.span_id == request.get_span_context().span_id, "siblings, not nested"
        assert span.end_time is not None and span.status.status_code == StatusCode.UNSET
    assert spans[two.id].name == "enqueue mail"
    assert spans[two.id].attributes["messaging.destination.name"] == "mail"
    queued = {**_payload(app), **_payload(app, "mail")}
    for jid in (one.id, two.id, *(h.id for h in batch), async_one.id):
        assert queued[jid]["traceparent"] == _traceparent_of(spans[jid])
    (scheduled,) = Inspector(app.client.sync).entries("schedule")
    assert json.loads(scheduled.raw)["traceparent"] == _traceparent_of(spans[later.id])
    app.close()


def test_a_request_with_its_own_traceparent_gets_no_second_span(redis_url: str) -> None:
    app = make_app(redis_url)
    with tracing.enqueue_span("echo", "default") as carrier:
        handle = app.enqueue("echo", args=[1], extra=carrier)
    (span,) = _spans("enqueue echo")
    assert _payload(app)[handle.id]["traceparent"] == carrier["traceparent"]
    assert carrier["traceparent"] == _traceparent_of(span)
    app.close()


def test_a_failed_push_ends_its_spans_with_the_error() -> None:
    app = App(redis_url="redis://127.0.0.1:9/0")  # nothing listens on the discard port
    with pytest.raises(BrokerError, match="cannot reach Redis"):
        app.enqueue("echo", args=[1])
    (span,) = _spans("enqueue echo")
    assert span.status.status_code == StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]
    app.close()


TRACING_OFF = """
import json, sys
if sys.argv[2] == "not-installed":
    sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
from conveyor import App, tracing
from conveyor.admin import Inspector
app = App(redis_url=sys.argv[1])
handle = app.enqueue("echo", args=[1])
(queued,) = Inspector(app.client.sync).queue_jobs("default")
print(json.dumps({"available": tracing.available(), "enabled": tracing.enabled(),
                  "off": tracing.enqueue_spans() is tracing._OFF,
                  "traceparent": "traceparent" in json.loads(queued.raw)}))
"""


@pytest.mark.parametrize("how", ["no-provider", "not-installed"])
def test_without_a_tracer_provider_or_the_packages_enqueues_are_not_traced(
        redis_url: str, how: str) -> None:
    out = subprocess.run([sys.executable, "-c", TRACING_OFF, redis_url, how], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    report = json.loads(out.splitlines()[-1])
    assert report == {"available": how == "no-provider", "enabled": False, "off": True,
                      "traceparent": False}


def test_extract_ignores_missing_or_malformed_traceparents() -> None:
    assert trace.get_current_span(tracing.extract({})).get_span_context().is_valid is False
    bad = tracing.extract({"traceparent": "not-a-traceparent"})
    assert trace.get_current_span(bad).get_span_context().is_valid is False


# --- structured logs ----------------------------------------------------------------------------
def _json_logger(name: str) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(JobContextFilter())
    logger = logging.getLogger(name)
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger, out


def test_json_lines_escape_injection_and_redact_secrets() -> None:
    logger, out = _json_logger("conveyor.test.json")
    logger.warning("payment failed\r\nFAKE level=error \x1b[31mred", extra={
        "jid": "j1", "job_type": "charge", "queue": "billing", "attempt": 2,
        "kwargs": {"card": {"number": "4111", "cvv_token": "123"}, "Api-Key": "k-999"},
        "password": "hunter2"})
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, "one event, one line"
    event = json.loads(lines[0])
    assert event["message"] == "payment failed\r\nFAKE level=error \x1b[31mred"
    assert event["jid"] == "j1" and event["attempt"] == 2 and event["level"] == "warning"
    assert event["kwargs"] == {"card": {"number": "4111", "cvv_token": "[redacted]"},
                               "Api-Key": "[redacted]"}
    assert event["password"] == "[redacted]"
    assert "hunter2" not in out.getvalue() and "k-999" not in out.getvalue()


def test_redact_walks_nested_structures() -> None:
    data = [{"user": "a", "auth": {"Authorization": "Bearer x", "ok": 1}}, ("db_password", 1)]
    assert redact(data) == [{"user": "a", "auth": {"Authorization": "[redacted]", "ok": 1}},
                            ["db_password", 1]]
    assert redact({"note": "x"}, secret_keys=["note"]) == {"note": "[redacted]"}


def test_logs_from_job_code_carry_the_job_fields(redis_url: str) -> None:
    logger, out = _json_logger("conveyor.test.jobcode")
    app = App(settings=make_app(redis_url).settings)

    @app.job(name="charge", queue="default")
    def charge(amount: int) -> None:
        logger.info("charging %d", amount)

    handle = app.enqueue("charge", args=[42])
    drain(app)
    event = json.loads(out.getvalue().splitlines()[0])
    assert event["message"] == "charging 42"
    assert (event["jid"], event["job_type"], event["queue"], event["attempt"]) == (
        handle.id, "charge", "default", 1)
    app.close()


def test_logging_observer_logs_each_run(redis_url: str) -> None:
    logger, out = _json_logger("conveyor.test.observer")
    app = make_app(redis_url)
    ok = app.enqueue("echo", args=[1]).id
    bad = app.enqueue("boom", args=["nope"]).id
    with WorkerThread(app, concurrency=1, observers=[LoggingObserver(logger)]):
        wait_until(lambda: out.getvalue().count("\n") >= 4, what="four log lines")
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    done = {e["jid"]: e for e in events if e["message"] != "job started"}
    assert done[ok]["outcome"] == "completed" and done[ok]["duration_s"] >= 0
    assert done[bad]["outcome"] == "dead" and done[bad]["error_class"] == "ValueError"
    assert done[bad]["level"] == "warning"
    app.close()


def test_configure_logging_formats() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        handler = configure_logging("json")
        assert isinstance(handler.formatter, JsonFormatter) and root.handlers == [handler]
        with pytest.raises(ValueError, match="text' or 'json"):
            configure_logging("xml")
    finally:
        root.handlers, root.level = saved[0], saved[1]
