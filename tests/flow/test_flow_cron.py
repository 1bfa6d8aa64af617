"""Periodic jobs: slot arithmetic (time zones, catch-up), the duty's exactly-once firing with
several schedulers, run-time entries through the facade, and three scheduler processes of which
one is SIGKILLed every few seconds."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from datetime import datetime
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
import redis
from flow_procs import kill, processes, scheduler, wait_until

from conveyor import App
from conveyor.admin import Inspector
from conveyor.broker import AsyncBroker
from conveyor.errors import ConfigurationError
from conveyor.flow import CronEntry
from conveyor.flow.cronduty import CronScheduler
from conveyor.settings import Settings

S = 1000  # ms per second
KILL_EVERY_S = 3.0
CHAOS_RUN_S = 15.0


def ms(year: int, month: int, day: int, hour: int) -> int:
    return round(datetime(year, month, day, hour, tzinfo=ZoneInfo("UTC")).timestamp() * S)


def test_cron_slots_follow_the_time_zone_across_daylight_saving() -> None:
    e = CronEntry("daily", "T", cron="0 9 * * *", tz="America/New_York")
    before = e.next_slot(ms(2025, 3, 8, 12))
    after = e.next_slot(before)
    assert datetime.fromtimestamp(before / S, ZoneInfo("UTC")).hour == 14  # EST
    assert datetime.fromtimestamp(after / S, ZoneInfo("UTC")).hour == 13  # EDT
    assert e.latest_slot(after + 1) == after


def test_intervals_are_aligned_to_the_epoch() -> None:
    e = CronEntry("e", "T", every_s=5)
    assert e.next_slot(12_345) == 15_000 and e.latest_slot(12_345) == 10_000


@pytest.mark.parametrize(("policy", "expected"), [
    ("one", [18, 19, 20]),          # one run (the latest) for the missed slots, then the rest
    ("all", list(range(11, 21))),   # every missed slot
    ("none", [19, 20]),             # only the slots within grace
])
def test_catch_up_policy_after_downtime(policy: str, expected: list[int]) -> None:
    e = CronEntry("e", "T", every_s=1, grace_s=1.5, catch_up=policy)
    # last fired at 10 s, now 20.2 s: 11..18 are older than the grace, 19 and 20 within it
    assert [s // S for s in e.due(10 * S, 20 * S + 200)] == expected


def test_bad_entries_are_refused_with_the_reason() -> None:
    with pytest.raises(ConfigurationError, match="not a valid cron"):
        CronEntry("x", "T", cron="61 * * * *")
    with pytest.raises(ConfigurationError, match="time zone"):
        CronEntry("x", "T", cron="* * * * *", tz="Mars/Olympus")
    with pytest.raises(ConfigurationError, match="exactly one"):
        CronEntry("x", "T")


def fired(r: redis.Redis, queue: str = "default") -> Counter[tuple[str, float]]:
    jobs = [json.loads(raw) for raw in r.lrange(f"queue:{queue}", 0, -1)]
    return Counter((j["cron"], j["cron_slot"]) for j in jobs if "cron" in j)


@pytest.mark.slow  # runs three schedulers for ~2 s of 0.2 s slots
async def test_three_schedulers_fire_each_slot_once(redis_url: str,
                                                    redis_sync: redis.Redis) -> None:
    settings = Settings(redis_url=redis_url)
    entry = CronEntry("fast", "T", every_s=0.2)
    brokers = [AsyncBroker(redis_url, settings) for _ in range(3)]
    duties = [CronScheduler(b, [entry], interval_s=0.05) for b in brokers]
    tasks = [asyncio.create_task(d.run()) for d in duties]
    try:
        await asyncio.sleep(2.0)
    finally:
        for d in duties:
            d.stop()
        await asyncio.gather(*tasks)
        for b in brokers:
            await b.close()
    counts = fired(redis_sync)
    slots = sorted(s for _, s in counts)
    assert set(counts.values()) == {1}
    assert len(slots) >= 8
    assert all(round(b - a, 3) == 0.2 for a, b in pairwise(slots))
    assert sum(d.fired for d in duties) == len(slots)


async def test_run_time_entries_fire_pause_and_go(redis_url: str,
                                                 redis_sync: redis.Redis) -> None:
    app = App(settings=Settings(redis_url=redis_url))
    flow = Inspector(app.client.sync).flow
    info = flow.add_cron(CronEntry("report", "Report", cron="*/5 * * * *", args=[1],
                                   tz="Europe/Paris", queue="low"))
    assert info.source == "runtime" and info.next_slot is not None
    broker = AsyncBroker(redis_url, app.settings)
    try:
        duty = CronScheduler(broker)
        await duty.tick()  # first sight: remembers the current slot, fires nothing
        assert not fired(redis_sync, "low")
        ten_minutes_ago = round(info.next_slot * S) - 10 * 60 * S
        redis_sync.hset("conveyor:cron:last", "report", ten_minutes_ago)
        await duty.tick()  # two slots were missed, older than the grace: catch-up "one"
        assert sum(fired(redis_sync, "low").values()) == 1
        job = json.loads(redis_sync.lindex("queue:low", 0))
        assert job["class"] == "Report" and job["args"] == [1] and job["queue"] == "low"
        flow.set_cron_enabled("report", False)
        redis_sync.hset("conveyor:cron:last", "report", 0)
        await duty.tick()
        assert sum(fired(redis_sync, "low").values()) == 1  # paused
        assert flow.remove_cron("report") and flow.cron_entries() == []
    finally:
        await broker.close()
        app.close()


async def test_a_code_entry_fires_only_where_its_code_runs(redis_url: str,
                                                          redis_sync: redis.Redis) -> None:
    """An entry removed from the code stays listed for the admin but no longer fires."""
    stale = CronEntry("gone", "T", every_s=1)
    redis_sync.hset("conveyor:cron:entries", "gone", json.dumps(stale.to_json()))
    redis_sync.hset("conveyor:cron:last", mapping={"gone": 0, "live": 0})
    broker = AsyncBroker(redis_url, Settings(redis_url=redis_url))
    try:
        await CronScheduler(broker, [CronEntry("live", "T", every_s=1)]).tick()
    finally:
        await broker.close()
    names = Counter(name for name, _ in fired(redis_sync))
    assert names["gone"] == 0 and names["live"] > 0
    assert redis_sync.hexists("conveyor:cron:entries", "gone")


@pytest.mark.slow
@pytest.mark.chaos
def test_cron_slots_fire_exactly_once_while_schedulers_are_killed(
        redis_url: str, redis_sync: redis.Redis) -> None:
    """T17 (short): three scheduler processes, one SIGKILLed (and restarted) every 3 s, an
    entry every second for 15 s: every slot in between fired exactly once."""
    procs = [scheduler(redis_url) for _ in range(3)]
    rng = random.Random(6)
    kills = 0
    with processes(*procs) as alive:
        wait_until(lambda: fired(redis_sync), 15, "the first slot")
        started = time.monotonic()
        while time.monotonic() - started < CHAOS_RUN_S:
            time.sleep(KILL_EVERY_S)
            victim = rng.randrange(len(alive))
            kill(alive[victim])
            kills += 1
            alive[victim] = scheduler(redis_url)
    counts = fired(redis_sync)
    slots = sorted(s for _, s in counts)
    missing = [s for s in range(int(slots[0]), int(slots[-1]) + 1) if (("every-second",
                                                                        float(s)) not in counts)]
    doubled = {s: n for s, n in counts.items() if n > 1}
    print(f"\ncron: {len(slots)} slots fired, {kills} schedulers killed, "
          f"missed {len(missing)}, doubled {len(doubled)}")
    assert not doubled and not missing
    assert len(slots) >= CHAOS_RUN_S - 1
