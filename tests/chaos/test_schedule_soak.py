"""Scenarios 13 and 14 in CI: scheduled and periodic jobs across scheduler kills and an outage; a
short soak."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .procs import FAST_ENV
from .results import write_result
from .rig import Rig
from .scenarios import schedule, soak

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(120)]
# Leases longer than the outage, so the outage tests the schedulers and not lease recovery.
LONG_LEASE_ENV = {**FAST_ENV, "CONVEYOR_LEASE_TTL_S": "6", "CONVEYOR_HEARTBEAT_INTERVAL_S": "1"}
OUTAGE_S = 2.0
LEASE_S = float(LONG_LEASE_ENV["CONVEYOR_LEASE_TTL_S"])
TICK_S = float(LONG_LEASE_ENV["CONVEYOR_SCHEDULER_INTERVAL_S"]) * 1.2  # the duty's jitter
CRON_EVERY_S = 0.5
# Shorter than the outage: the slots due while Redis is cut off are past their grace when it
# comes back, so only catch_up="all" fires them (each once). The test tells the policies apart:
# the same run with catch_up="one" missed 2 of 28 slots, with "none" 3.
CRON_GRACE_S = 0.5


def test_every_scheduled_job_and_cron_slot_fires_once_across_scheduler_kills_and_an_outage(
        make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(proxy=True, env=LONG_LEASE_ENV)
    result = schedule.run(rig, schedulers=3, one_offs=150, span_s=12, kill_every_s=3,
                          outage_s=OUTAGE_S, every_s=CRON_EVERY_S, catch_up="all",
                          cron_grace_s=CRON_GRACE_S)
    write_result({"profile": "fast", **result})
    print(result)
    assert result["kills"] >= 3 and result["due_in_outage"] > 0
    assert result["missed"] == 0
    assert result["doubled"] == 0, "a schedule fired twice"
    assert result["early"] == 0
    # a due job waits for a scheduler tick (0.2 s +20%), or for the outage to end, and, when the
    # worker that took it was killed, for that worker's lease to run out
    assert result["lateness_s_p50"] < 0.5
    assert result["lateness_in_outage_s_max"] < OUTAGE_S + LEASE_S + 1.0
    # the periodic entry: every slot of the window once, the outage's slots by the catch-up
    assert result["cron_window_slots"] >= 10 and result["cron_due_in_outage"] >= 1
    assert result["cron_missed"] == 0, "a cron slot was never fired"
    assert result["cron_doubled"] == 0, "a cron slot fired twice"
    assert result["cron_rerun_other"] == 0 and result["cron_early"] == 0
    assert result["cron_fired_past_grace"] >= 1  # catch_up="all" did the work
    assert result["cron_fire_times_read"] == result["cron_firings"]  # from the status records
    assert result["cron_fire_lateness_s_p50"] < TICK_S + 0.3
    assert result["cron_fire_lateness_s_max"] < OUTAGE_S + TICK_S + 1.0
    assert result["cron_start_lateness_in_outage_s_max"] < OUTAGE_S + LEASE_S + 1.0


def test_short_soak_keeps_memory_keys_and_descriptors_flat(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(env={**FAST_ENV, "CONVEYOR_STATUS_TTL_S": "4"})
    result = soak.run(rig, duration_s=16, rate=150, sample_every_s=1, warmup_s=6)
    result.pop("samples")
    write_result({"profile": "fast", **result})
    print(result)
    assert result["lost"] == 0 and result["workers_alive"] == 2
    assert result["other_keys_growth"] <= 3
    assert result["transient_keys_max"] <= 2 * soak.TRANSIENT_PER_WORKER + 3  # 2 workers
    assert abs(result["status_records_growth"]) < 0.3 * 150 * 4  # bounded by rate x TTL
    assert result["redis_memory_growth_bytes"] < 512 * 1024
    assert all(kb < 5 * 1024 for kb in result["rss_growth_kb"])
    assert all(n <= 2 for n in result["fds_growth"])
