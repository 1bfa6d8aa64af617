"""Scenario 7 in CI: a job that kills its executor, among 200 normal jobs, per executor."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .results import write_result
from .rig import Rig
from .scenarios import poison

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(120)]
MAX_RECOVERIES = 3  # the shipping default: the 4th loss buries the job


def _check(result: dict[str, object]) -> None:
    assert result["lost"] == 0 and result["unexpected"] == 0
    assert result["other_dead"] == 0, "a normal job was dead-lettered"
    assert result["poison_dead"], result
    assert result["poison_error_class"] == "WorkerLost"
    assert "worker lost" in str(result["poison_error_message"])
    assert result["poison_runs"] == MAX_RECOVERIES + 1


def test_a_job_that_kills_its_worker_process_is_buried_after_three_losses(
        make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(executors="thread")
    result = poison.run(rig, poison_type="crash")
    write_result({"profile": "fast", **result})
    print(result)
    _check(result)


@pytest.mark.parametrize("executor", ["process", "fork"])
def test_a_job_that_kills_its_executor_child_is_buried_after_three_losses(
        make_rig: Callable[..., Rig], executor: str) -> None:
    rig = make_rig(executors=f"thread,{executor}")
    result = poison.run(rig, poison_type=f"crash_{executor}", timeout_s=30)
    write_result({"profile": "fast", **result})
    print(result)
    _check(result)
