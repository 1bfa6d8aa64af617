"""Encoding corner cases between Conveyor's JSON (orjson) and Sidekiq's (Ruby's JSON.generate).

Both sides write compact UTF-8 JSON and agree byte for byte on strings (astral characters,
U+2028, control characters), integers of any size, null and nesting. Floats written in exponent
form differ only in notation (Ruby ``1.0e+20``, Python ``1e+20``); the values are equal, and
neither side ever rebuilds a member to find it: Sidekiq's API and Web UI and Conveyor's
inspector all remove entries by the exact bytes they read, which the last test checks.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import redis
from interop_helpers import CORNER_ARGS, Recorder, same_values, wait_until

from conveyor import App, current_job
from conveyor.job import dumps, loads

pytestmark = pytest.mark.interop

SAME_BYTES: list[Any] = [
    "ünïcödé ✓ 中文 😀 𝄞", "\u2028\u2029", "\u0000\u0001\u001f\u007f", "tab\t nl\n quote\" \\ /",
    0, -1, 2**53 + 1, 2**63, 2**64 + 1, -(2**70), 10**40,
    0.1, -0.0, 100.0, 123456789.12345679, 2.5, 1e14,
    None, True, False, [], {}, {"nested": {"deeper": [1, {"k": None}]}, "ü": ["😀"]},
]
NOTATION_ONLY: list[float] = [1e20, 1e16, 1e15, 5e-324, 1.5e-7, 1.7976931348623157e308, -2.5e-10]


def test_strings_integers_and_nesting_are_byte_identical(ruby: Any) -> None:
    ours = dumps(SAME_BYTES).decode()
    assert ruby("generate", {"value": loads(ours)})["json"] == ours


@pytest.mark.parametrize("value", NOTATION_ONLY)
def test_exponent_floats_differ_in_notation_only(ruby: Any, value: float) -> None:
    theirs = ruby("generate", {"value": [value]})["json"]
    ours = dumps([value]).decode()
    assert loads(theirs)[0] == loads(ours)[0] == value
    assert math.copysign(1, loads(theirs)[0]) == math.copysign(1, value)


def test_scheduled_entries_are_found_deleted_and_enqueued_by_their_exact_bytes(
        app: App, ruby: Any, conveyor: Any, redis_sync: redis.Redis) -> None:
    runs = Recorder()

    @app.job(name="CornerJob", queue="py")
    def corner(*args: Any) -> None:
        runs.add((current_job().jid, list(args)))

    args = [*CORNER_ARGS, *NOTATION_ONLY]
    kept = app.enqueue("CornerJob", args=args, delay=3600).id
    gone = app.enqueue("CornerJob", args=[*args, "x"], delay=3600).id
    ours = {loads(raw)["jid"]: raw for raw in redis_sync.zrange("schedule", 0, -1)}
    seen = {e["jid"]: e for e in ruby("entries", {"set": "schedule"})}
    for jid in (kept, gone):
        assert seen[jid]["value"].encode() == ours[jid]  # Ruby read our exact bytes
    ruby("entry_action", {"set": "schedule", "jid": gone, "action": "delete"})
    ruby("entry_action", {"set": "schedule", "jid": kept, "action": "add_to_queue"})
    assert redis_sync.zcard("schedule") == 0
    conveyor(app, ["py"])
    jid, got = runs.wait(1)[0]
    assert jid == kept and same_values(got, args)
    wait_until(lambda: redis_sync.llen("queue:py") == 0, what="the queue to drain")
    assert len(runs.items) == 1
