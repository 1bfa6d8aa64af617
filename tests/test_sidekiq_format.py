"""Sidekiq's wire format, checked from Python: payloads Ruby writes run here, and what we write
has the fields, types and layout Sidekiq 6.4 reads. (The suite against real Ruby is in
``tests/interop``.)"""

from __future__ import annotations

import json
import random
import re

import redis

from conveyor.retry import compress_backtrace, decide, decompress_backtrace, sidekiq_delay
from worker_helpers import fast_app, running_worker, wait_for

# Exactly as Sidekiq 6.4.1's client stored it (reference §1.2), retry: true included.
RUBY_PUSHED = (b'{"retry":true,"queue":"default","class":"PyJob","args":[1,"x",{"k":2}],'
               b'"jid":"77447ff35d5e42f5e92a0c8f","created_at":1795320861.170954,'
               b'"enqueued_at":1795320861.1710985}')


async def test_a_job_pushed_by_ruby_runs_here(redis_url: str, redis_sync: redis.Redis) -> None:
    app = fast_app(redis_url)
    got: list[object] = []

    @app.job(name="PyJob")
    def py_job(a: int, b: str, c: dict[str, int]) -> None:
        got.append((a, b, c))

    redis_sync.sadd("queues", "default")
    redis_sync.lpush("queue:default", RUBY_PUSHED)
    async with running_worker(app):
        await wait_for(lambda: got, what="the Ruby job to run")
        await wait_for(lambda: app.handle("77447ff35d5e42f5e92a0c8f").status().state
                       == "completed", what="completed status")
    assert got == [(1, "x", {"k": 2})]


def test_what_we_enqueue_is_a_valid_sidekiq_job(redis_url: str, redis_sync: redis.Redis) -> None:
    app = fast_app(redis_url)
    h = app.enqueue("HardJob", args=[1, "ünï", {"k": [None, 1.5]}], queue="critical")
    assert redis_sync.smembers("queues") == {b"critical"}
    (raw,) = redis_sync.lrange("queue:critical", 0, -1)
    assert b" " not in raw.replace(b"\xc3\xbc", b"")  # compact, like Ruby's JSON.generate
    assert "ünï".encode() in raw  # raw UTF-8, no \u escapes
    job = json.loads(raw)
    assert job["class"] == "HardJob" and job["queue"] == "critical" and job["retry"] is True
    assert job["args"] == [1, "ünï", {"k": [None, 1.5]}]
    assert re.fullmatch(r"[0-9a-f]{24}", job["jid"]) and job["jid"] == h.id
    assert isinstance(job["created_at"], float) and isinstance(job["enqueued_at"], float)
    assert list(job)[-1] == "enqueued_at"
    assert "kwargs" not in job  # only present when there are keyword arguments


def test_scheduled_jobs_are_in_the_schedule_without_enqueued_at(
        redis_url: str, redis_sync: redis.Redis) -> None:
    app = fast_app(redis_url)
    app.enqueue("Later", args=["x"], delay=3600)
    ((raw, score),) = redis_sync.zrange("schedule", 0, -1, withscores=True)
    job = json.loads(raw)
    assert "enqueued_at" not in job and "at" not in job
    assert score > job["created_at"] + 3590


async def test_a_sidekiq_retry_entry_is_promoted_and_run(redis_url: str,
                                                        redis_sync: redis.Redis) -> None:
    """An entry as Sidekiq's server writes to ``retry``: error fields and an old enqueued_at."""
    entry = (b'{"retry":true,"queue":"default","class":"PyJob","args":[5],'
             b'"jid":"aaaaaaaaaaaaaaaaaaaaaaaa","created_at":1795320861.1,'
             b'"enqueued_at":1795320861.2,"error_message":"boom","error_class":"RuntimeError",'
             b'"failed_at":1795320861.3,"retry_count":0,"extra_py_field":"kept"}')
    redis_sync.zadd("retry", {entry: 1000.0})
    app = fast_app(redis_url)
    got: list[int] = []

    @app.job(name="PyJob")
    def py_job(x: int) -> None:
        got.append(x)

    async with running_worker(app):
        await wait_for(lambda: got == [5], what="the retried job")
    assert redis_sync.zcard("retry") == 0


def test_retry_rewrite_matches_sidekiq_fields_and_formula() -> None:
    first = decide(RUBY_PUSHED, "default", "RuntimeError", "boom", ["a.py:1:in `f'"])
    job = json.loads(first.raw)
    assert first.mode == "retry" and 15 <= first.delay_s <= 24
    assert job["retry_count"] == 0 and isinstance(job["failed_at"], float)
    assert "retried_at" not in job and job["error_class"] == "RuntimeError"
    second = decide(first.raw, "default", "RuntimeError", "again", [])
    job2 = json.loads(second.raw)
    assert job2["retry_count"] == 1 and isinstance(job2["retried_at"], float)
    assert job2["failed_at"] == job["failed_at"] and 16 <= second.delay_s <= 34
    for key in ("jid", "created_at", "class", "args"):
        assert job2[key] == json.loads(RUBY_PUSHED)[key]


def test_retry_semantics_true_int_zero_false() -> None:
    def mode(retry: object, count: int | None = None) -> str:
        job = {"class": "X", "args": [], "jid": "j", "queue": "q", "retry": retry}
        if count is not None:
            job["retry_count"] = count
        return decide(json.dumps(job).encode(), "q", "E", "m", []).mode

    assert mode(True) == "retry" and mode(True, 23) == "retry" and mode(True, 24) == "dead"
    assert mode(2) == "retry" and mode(2, 0) == "retry" and mode(2, 1) == "dead"
    assert mode(0) == "dead"
    assert mode(False) == "discard" and mode(None) == "discard"


def test_sidekiq_delay_ranges_match_the_published_table() -> None:
    rng = random.Random(1)
    table = {0: (15, 24), 1: (16, 34), 2: (31, 58), 3: (96, 132), 24: (331791, 332016)}
    for count, (lo, hi) in table.items():
        samples = [sidekiq_delay(count, rng) for _ in range(200)]
        assert lo <= min(samples) and max(samples) <= hi


def test_backtrace_is_mime_base64_zlib_json_like_sidekiq_6() -> None:
    lines = [f"app/jobs/x.rb:{i}:in `perform'" for i in range(40)]
    packed = compress_backtrace(lines)
    assert "\n" in packed and packed.endswith("\n")  # Base64.encode64: a newline every 60
    assert decompress_backtrace(packed) == lines
