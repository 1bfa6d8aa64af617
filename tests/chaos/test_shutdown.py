"""Scenario 2 in CI: TERM with long and short jobs in flight (grace 2 s, long jobs 6 s).

One run of the scenario feeds every test of this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from redis_server import RedisServer

from .results import write_result
from .rig import opened
from .scenarios import shutdown

GRACE_S = 2.0

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def result(ledger_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    log_dir: Path = tmp_path_factory.mktemp("shutdown")
    with opened(ledger_server.url, log_dir) as rig:
        out = shutdown.run(rig, grace_s=GRACE_S, long_s=6.0)
    write_result({"profile": "fast", **out})
    print(out)
    return out


def test_term_fetches_nothing_more_and_finishes_short_jobs_once(result: dict[str, Any]) -> None:
    assert result["started_after_term"] == 0
    assert result["short_in_flight_at_term"] > 0, "TERM hit no short job: nothing was tested"
    assert result["short_rerun"] == 0
    assert result["lost"] == 0 and result["unexpected"] == 0


def test_term_hands_each_long_job_back_exactly_once(result: dict[str, Any]) -> None:
    assert result["long_started_on_b"] == 2
    assert result["long_starts"] == [2, 2]


def test_worker_exits_at_the_end_of_its_grace_without_running_handed_back_jobs(
        result: dict[str, Any]) -> None:
    assert result["exit_after_term_s"] < GRACE_S + 1.5
    assert result["long_finished_on_a_after_term"] == 0
    assert result["duplicated"] == 0
