"""Structured logs: one JSON object per line, with the job's id, type, queue and attempt.

``configure_logging("json")`` installs :class:`JsonFormatter` and :class:`JobContextFilter` on
the root logger. The filter adds the running job's fields to every record logged from job code
(it reads ``conveyor.current_job()``); worker code passes them with ``extra=job_fields(job)``.
Encoding with orjson escapes CR, LF and ANSI escapes, so a hostile message is one event on one
line. :func:`redact` replaces the values of secret-looking keys (``password``, ``token``,
``api_key``...) anywhere in nested arguments; the formatter applies it to ``args``/``kwargs``
extras, and the API and dashboard apply it to every job argument they show.
:class:`LoggingObserver` logs one line when a job starts and one when it ends.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

REDACTED = "[redacted]"
DEFAULT_SECRET_KEYS = frozenset({
    "password", "passwd", "secret", "token", "api_key", "apikey", "authorization",
    "credential", "private_key", "cookie", "signature",
})
JOB_FIELDS = ("jid", "job_type", "queue", "attempt")
MAX_REDACT_DEPTH = 32
_STD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}


def _normal(key: str) -> str:
    return key.lower().replace("-", "_")


def is_secret_key(key: str, secret_keys: Iterable[str] = DEFAULT_SECRET_KEYS) -> bool:
    """True when ``key`` contains one of the secret words (``db_password``, ``X-Api-Key``)."""
    norm = _normal(key)
    return any(word in norm for word in secret_keys)


def redact(value: Any, secret_keys: Iterable[str] | None = None, _depth: int = 0) -> Any:
    """A copy of ``value`` with the values of secret-looking keys replaced by ``[redacted]``."""
    keys = frozenset(_normal(k) for k in (secret_keys or DEFAULT_SECRET_KEYS))
    return _redact(value, keys, _depth)


def _redact(value: Any, keys: frozenset[str], depth: int) -> Any:
    if depth > MAX_REDACT_DEPTH:
        return REDACTED
    if isinstance(value, Mapping):
        return {k: (REDACTED if isinstance(k, str) and is_secret_key(k, keys)
                    else _redact(v, keys, depth + 1)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v, keys, depth + 1) for v in value]
    return value


def job_fields(jid: str, job_type: str, queue: str, attempt: int) -> dict[str, Any]:
    """The ``extra=`` of a log call about one job."""
    return {"jid": jid, "job_type": job_type, "queue": queue, "attempt": attempt}


class JobContextFilter(logging.Filter):
    """Adds the fields of the job running in this task or thread to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "jid", None):
            return True
        try:
            from .context import current_job

            ctx = current_job()
        except (RuntimeError, ImportError):
            return True
        for key, value in job_fields(ctx.jid, ctx.name, ctx.queue, ctx.attempt).items():
            setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, job fields and extras."""

    def __init__(self, secret_keys: Iterable[str] | None = None) -> None:
        super().__init__()
        self.secret_keys = frozenset(secret_keys or DEFAULT_SECRET_KEYS)

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key in _STD_ATTRS or key.startswith("_"):
                continue
            event[key] = REDACTED if is_secret_key(key, self.secret_keys) else redact(
                value, self.secret_keys)
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(event, default=repr).decode()


class LoggingObserver:
    """Logs each job's start and end with its fields, duration and outcome."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger("conveyor.jobs")

    def job_started(self, job: Any, spec: Any) -> None:
        self.log.info("job started", extra=job_fields(job.jid, job.name, job.queue, job.attempt))

    def job_finished(self, job: Any, spec: Any, outcome: Any, result: str) -> None:
        extra = job_fields(job.jid, job.name, job.queue, job.attempt)
        extra.update(outcome=result, duration_s=round(outcome.duration_s, 6))
        if not outcome.ok:
            extra.update(error_class=outcome.error_class, error_message=outcome.message[:2000])
        level = logging.INFO if outcome.ok else logging.WARNING
        self.log.log(level, "job %s", result, extra=extra)


def configure_logging(fmt: str = "text", level: int = logging.INFO,
                      secret_keys: Iterable[str] | None = None) -> logging.Handler:
    """Log to stderr as ``text`` (human) or ``json`` (one object per line)."""
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', got {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(secret_keys))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(JobContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
