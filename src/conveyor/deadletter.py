"""Building dead-set entries for jobs that cannot run: malformed payloads and lost workers.

A parseable job keeps every byte of its arguments and gains Sidekiq's error fields. A payload
that is not a job at all is wrapped in a job of type ``conveyor.MalformedJob`` whose single
argument is the original text (or its base64 when it was not UTF-8), so the dead set holds what
was found and why, and nothing runs it by accident (its ``retry`` is false).
"""

from __future__ import annotations

import base64
from typing import Any

from .job import dumps, loads, new_jid, now_s
from .retry import scrub_message

MAX_DEAD_RAW_BYTES = 1024 * 1024  # a malformed payload larger than this is kept truncated
MALFORMED_TYPE = "conveyor.MalformedJob"


def dead_entry(raw: bytes, error_class: str, message: str, queue: str = "") -> tuple[bytes, str]:
    """The JSON to put in the dead set for ``raw``, and the job id it carries ("" if none)."""
    try:
        job = loads(raw)
    except (ValueError, UnicodeDecodeError):
        job = None
    if isinstance(job, dict) and isinstance(job.get("class"), str):
        now = now_s()
        job["error_class"] = error_class
        job["error_message"] = scrub_message(message)
        if job.get("retry_count") is None:
            job["failed_at"] = now
            job["retry_count"] = 0
        else:
            job["retried_at"] = now
        if queue:
            job["queue"] = queue
        if "enqueued_at" in job:
            job["enqueued_at"] = job.pop("enqueued_at")
        return dumps(job), str(job.get("jid") or "")
    return malformed_entry(raw, error_class, message, queue), ""


def malformed_entry(raw: bytes, error_class: str, message: str, queue: str) -> bytes:
    kept = raw[:MAX_DEAD_RAW_BYTES]
    wrapper: dict[str, Any] = {
        "retry": False,
        "queue": queue or "default",
        "class": MALFORMED_TYPE,
        "args": [],
        "jid": new_jid(),
        "created_at": now_s(),
        "error_class": error_class,
        "error_message": scrub_message(message),
        "failed_at": now_s(),
        "retry_count": 0,
    }
    try:
        wrapper["args"] = [kept.decode("utf-8")]
    except UnicodeDecodeError:
        wrapper["args"] = [base64.b64encode(kept).decode()]
        wrapper["raw_encoding"] = "base64"
    if len(raw) > MAX_DEAD_RAW_BYTES:
        wrapper["raw_truncated_from_bytes"] = len(raw)
    return dumps(wrapper)
