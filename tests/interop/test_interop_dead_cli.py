"""Direction 3, the command line: ``conveyor dead ls/requeue/purge`` on entries real Sidekiq wrote.

A real Sidekiq process fails ``FailJob`` (``retry: 0``: straight to the morgue, with its own
``error_backtrace``); the ``conveyor`` command, run as a user runs it (a subprocess), lists
those entries with the exact bytes Sidekiq stored, requeues them one by one or all at once
(Sidekiq then runs them with their arguments intact) and purges them by id or all at once.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from interop_helpers import CORNER_ARGS, conveyor_cli, ran_in_ruby, same_values, wait_until

# Each ``conveyor`` call is a fresh Python process that imports the whole CLI (about 2.5 s of
# CPU); on a shared, loaded 2-core machine one call took up to 18 s, so these tests get more
# than the suite's default 120 s.
CLI_TEST_TIMEOUT_S = 300
pytestmark = [pytest.mark.interop, pytest.mark.timeout(CLI_TEST_TIMEOUT_S)]

FAIL_FLAG = "interop:fail:FailJob"


def bury_in_sidekiq(ruby: Any, r: redis.Redis, args: list[list[Any]]) -> list[str]:
    """Push one FailJob per argument list and wait until Sidekiq has put each in ``dead``."""
    before = r.zcard("dead")
    jids = ruby("push_bulk", {"class": "FailJob", "queue": "rb", "retry": 0, "backtrace": 3,
                              "args": args})
    wait_until(lambda: r.zcard("dead") == before + len(jids), 30,
               f"Sidekiq to bury {len(jids)} FailJob(s)")
    return list(jids)


def dead_ls(redis_url: str) -> dict[str, dict[str, Any]]:
    rows = json.loads(conveyor_cli(redis_url, "dead", "ls", "--json", "--limit", "500").stdout)
    return {row["jid"]: row for row in rows}


def dead_jids(r: redis.Redis) -> set[str]:
    raws: Any = r.zrange("dead", 0, -1)
    return {json.loads(raw)["jid"] for raw in raws}


def runs_of(r: redis.Redis, jid: str) -> list[dict[str, Any]]:
    return [x for x in map(json.loads, r.lrange("interop:ran", 0, -1)) if x["jid"] == jid]


def test_dead_ls_shows_sidekiq_entries_with_their_exact_bytes(
        ruby: Any, sidekiq: Any, redis_url: str, redis_sync: redis.Redis) -> None:
    redis_sync.set(FAIL_FLAG, "1")
    sidekiq(["rb"])
    jids = bury_in_sidekiq(ruby, redis_sync, [CORNER_ARGS, ["second", 2]])

    listed = dead_ls(redis_url)
    assert set(listed) == set(jids)
    members: Any = redis_sync.zrange("dead", 0, -1, withscores=True)
    stored = {json.loads(raw)["jid"]: (raw.decode(), score) for raw, score in members}
    for jid, row in listed.items():
        raw, score = stored[jid]
        assert row["raw"] == raw  # the member as Sidekiq wrote it, byte for byte
        assert row["score"] == score and row["set"] == "dead"
        assert (row["name"], row["queue"], row["retry_count"]) == ("FailJob", "rb", 0)
        assert (row["error_class"], row["error_message"]) == ("RuntimeError", "boom")
        assert "error_backtrace" in json.loads(raw)  # pushed with backtrace: 3
    assert same_values(listed[jids[0]]["args"], CORNER_ARGS)
    assert listed[jids[1]]["args"] == ["second", 2]
    seen_by_ruby = {e["jid"] for e in ruby("entries", {"set": "dead"})}
    assert seen_by_ruby == set(jids)


def test_dead_requeue_one_and_all_hand_sidekiq_entries_back_to_sidekiq(
        ruby: Any, sidekiq: Any, redis_url: str, redis_sync: redis.Redis) -> None:
    redis_sync.set(FAIL_FLAG, "1")
    sidekiq(["rb"])
    one, *rest = bury_in_sidekiq(ruby, redis_sync, [CORNER_ARGS, [1], ["ü", None], [{"k": []}]])
    redis_sync.delete(FAIL_FLAG)  # from now on FailJob succeeds

    out = conveyor_cli(redis_url, "dead", "requeue", one).stdout
    assert "requeued 1 job(s)" in out
    wait_until(lambda: len(runs_of(redis_sync, one)) == 2, 30, "Sidekiq to run the requeued job")
    assert same_values(runs_of(redis_sync, one)[1]["args"], CORNER_ARGS)
    assert dead_jids(redis_sync) == set(rest)

    assert "requeued 3 job(s)" in conveyor_cli(redis_url, "dead", "requeue", "--all").stdout
    ran_in_ruby(redis_sync, 4 + 1 + 3, 30)  # 4 failures, then 4 successful runs
    assert [runs_of(redis_sync, jid)[1]["args"] for jid in rest] == [[1], ["ü", None],
                                                                     [{"k": []}]]
    assert redis_sync.zcard("dead") == 0 and redis_sync.zcard("retry") == 0
    # naming nothing is refused rather than read as "all"
    refused = conveyor_cli(redis_url, "dead", "requeue", expect_rc=1)
    assert "--all" in refused.stderr + refused.stdout


def test_dead_purge_by_id_and_all_delete_sidekiq_entries(
        ruby: Any, sidekiq: Any, redis_url: str, redis_sync: redis.Redis) -> None:
    redis_sync.set(FAIL_FLAG, "1")
    sidekiq(["rb"])
    first, *others = bury_in_sidekiq(ruby, redis_sync, [[n] for n in range(4)])

    assert "deleted 1 job(s)" in conveyor_cli(redis_url, "dead", "purge", first).stdout
    assert dead_jids(redis_sync) == set(others)
    conveyor_cli(redis_url, "dead", "purge", stdin="n\n", expect_rc=1)  # asks first; "no" keeps
    assert redis_sync.zcard("dead") == len(others)
    assert "deleted 3 job(s)" in conveyor_cli(redis_url, "dead", "purge", "--yes").stdout
    assert redis_sync.zcard("dead") == 0
    assert ruby("entries", {"set": "dead"}) == []
    assert redis_sync.llen("queue:rb") == 0  # purged, not requeued
