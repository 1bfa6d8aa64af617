"""Scenarios 8 and 9 in CI: malformed and hostile entries pushed straight into a queue."""

from __future__ import annotations

from typing import Any

import pytest

from .results import write_result
from .scenarios import malformed

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def result(ledger_server: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from .rig import opened

    with opened(ledger_server.url, tmp_path_factory.mktemp("malformed")) as rig:
        out = malformed.run(rig, timeout_s=30)
    write_result({"profile": "fast", **out})
    print(out)
    return out


def test_no_code_named_by_job_data_runs_and_no_module_is_imported(
        result: dict[str, Any]) -> None:
    assert result["markers"] == []


def test_the_worker_keeps_going_and_valid_jobs_all_finish(result: dict[str, Any]) -> None:
    assert result["worker_alive"]
    assert result["valid_finished"] == result["valid_jobs"]


def test_log_lines_stay_bounded(result: dict[str, Any]) -> None:
    assert result["log_line_max_chars"] <= malformed.MAX_LOG_LINE_CHARS
    assert result["log_bytes"] < 200 * result["injected"] + 20_000


def test_unknown_types_and_dotted_paths_are_dead_lettered(result: dict[str, Any]) -> None:
    assert result["dead_by_reason"].get("UnknownJobType") == result["expected_dead"][
        "UnknownJobType"]


def test_every_malformed_entry_is_dead_lettered_before_running(result: dict[str, Any]) -> None:
    assert result["hostile_runs"] == 0
    assert result["dead_by_reason"].get("MalformedJob") == result["expected_dead"]["MalformedJob"]
    assert result["pending"] == 0 and result["in_flight"] == 0
