"""Retry policy: Sidekiq's semantics and formula, per-type backoff, and the error fields.

``retry`` on a job is Sidekiq's: ``true`` retries up to the max (25), an integer N retries N
times, ``0`` sends the first failure to the dead set, ``false`` drops the job after the failure
(no retry, no dead entry). The default delay is ``count**4 + 15`` seconds plus jitter
``rand(0..9) * (count + 1)``, where ``count`` is the new ``retry_count``.
"""

from __future__ import annotations

import base64
import json
import random
import zlib
from dataclasses import dataclass
from typing import Any

from .job import dumps, loads, now_s
from .settings import MAX_ERROR_MESSAGE_CHARS, MAX_RETRIES

RUBY_BASE64_LINE_CHARS = 60  # Base64.encode64 (pack "m") wraps lines at 60 characters


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: ``base * factor**count`` seconds, capped, plus up to ``jitter`` x."""

    base_s: float = 1.0
    factor: float = 2.0
    cap_s: float = 3600.0
    jitter: float = 0.1

    def delay(self, count: int, rng: random.Random | None = None) -> float:
        raw = min(self.cap_s, self.base_s * self.factor**count)
        spread = (rng or random).uniform(0, self.jitter) * raw
        return min(self.cap_s, raw + spread)


def sidekiq_delay(count: int, rng: random.Random | None = None) -> float:
    """Sidekiq's default: ``count**4 + 15 + rand(0..9) * (count + 1)`` seconds."""
    return float(count**4 + 15 + (rng or random).randint(0, 9) * (count + 1))


def max_retries_of(retry: Any, default_max: int = MAX_RETRIES) -> int:
    """How many retries the ``retry`` field allows (False/None -> 0)."""
    if retry is True:
        return default_max
    if isinstance(retry, int) and not isinstance(retry, bool):
        return max(0, retry)
    return 0


def compress_backtrace(lines: list[str]) -> str:
    """Sidekiq 6.4's ``error_backtrace``: Ruby's ``Base64.encode64`` (a newline after every 60
    characters and at the end) of zlib-deflated compact UTF-8 JSON, byte for byte.

    A frame whose path held bytes that are not UTF-8 carries lone surrogates (Python's
    ``surrogateescape``); they become ``?``, as in :func:`scrub_message`, instead of failing
    the job's failure bookkeeping."""
    text = json.dumps(lines, separators=(",", ":"), ensure_ascii=False)
    packed = zlib.compress(text.encode("utf-8", "replace"))
    text = base64.b64encode(packed).decode()
    return "".join(text[i:i + RUBY_BASE64_LINE_CHARS] + "\n"
                   for i in range(0, len(text), RUBY_BASE64_LINE_CHARS))


def decompress_backtrace(value: str) -> list[str]:
    return list(json.loads(zlib.decompress(base64.b64decode(value))))


def scrub_message(message: str) -> str:
    """Cut to Sidekiq's 10,000 characters and make it valid UTF-8."""
    return message[:MAX_ERROR_MESSAGE_CHARS].encode("utf-8", "replace").decode("utf-8")


@dataclass(slots=True)
class Decision:
    """What to do with a failed job: ``retry`` after ``delay_s``, ``dead`` or ``discard``."""

    mode: str
    raw: bytes
    delay_s: float = 0.0


def decide(
    original_raw: bytes,
    queue: str,
    error_class: str,
    message: str,
    backtrace: list[str],
    *,
    retry_override: Any = None,
    backoff: Backoff | None = None,
    explicit_delay: float | None = None,
    max_retries: int = MAX_RETRIES,
) -> Decision:
    """Rewrite the job with its error fields, as Sidekiq does, and choose its fate.

    The rewrite starts from the raw string read from Redis so that keys written by other
    producers survive untouched.
    """
    job = loads(original_raw)
    job["queue"] = job.get("retry_queue") or queue
    job["error_message"] = scrub_message(message)
    job["error_class"] = error_class
    now = now_s()
    if "retry_count" in job and job["retry_count"] is not None:
        job["retried_at"] = now
        job["retry_count"] = int(job["retry_count"]) + 1
    else:
        job["failed_at"] = now
        job["retry_count"] = 0
    bt_opt = job.get("backtrace")
    if bt_opt and backtrace:
        keep = backtrace if bt_opt is True else backtrace[: int(bt_opt)]
        job["error_backtrace"] = compress_backtrace(keep)
    if "enqueued_at" in job:  # keep it last, where the scheduler refreshes it on promotion
        job["enqueued_at"] = job.pop("enqueued_at")
    retry = job.get("retry") if retry_override is None else retry_override
    count = job["retry_count"]
    if retry is False or retry is None:
        return Decision("discard", dumps(job))
    if count >= max_retries_of(retry, max_retries):
        if job.get("dead") is False:
            return Decision("discard", dumps(job))
        return Decision("dead", dumps(job))
    if explicit_delay is not None:
        delay = explicit_delay
    elif backoff is not None:
        delay = backoff.delay(count)
    else:
        delay = sidekiq_delay(count)
    return Decision("retry", dumps(job), delay)
