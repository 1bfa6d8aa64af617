"""The benchmark harness still works: ``bench/run.py --smoke`` on Conveyor and one peer (arq).

Runs the real harness in a subprocess (it starts its own Redis servers and builds arq's venv
under /tmp/bench-venvs on first use, which needs PyPI) and checks that every workload produced
sane figures for both. Marked slow: about a minute once the venv exists.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from redis_server import require_server_binary

ROOT = Path(__file__).resolve().parent.parent
SMOKE_TIMEOUT_S = 300  # includes building arq's venv on a fresh machine
PEERS = ("conveyor", "arq")
DRAINS = ("noop_drain", "sleep10_c50", "sleep10_cmax")


@pytest.fixture(scope="module")
def smoke_records(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    require_server_binary()
    out = tmp_path_factory.mktemp("bench") / "smoke.jsonl"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--smoke",
                           "--peers", ",".join(PEERS), "--out", str(out)],
                          capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "targets:" in proc.stdout
    return [json.loads(line) for line in out.read_text().splitlines()]


def find(records: list[dict[str, Any]], peer: str, workload: str) -> dict[str, Any]:
    found = [r for r in records if r.get("peer") == peer and r.get("workload") == workload]
    assert found, f"no {workload} record for {peer}"
    assert "error" not in found[0], found[0]["error"]
    return found[0]


@pytest.mark.slow
@pytest.mark.timeout(SMOKE_TIMEOUT_S + 60)
def test_run_header_records_machine_and_versions(smoke_records: list[dict[str, Any]]) -> None:
    header = smoke_records[0]
    assert header["type"] == "run" and header["smoke"] is True
    versions = header["versions"]
    assert isinstance(versions, dict)
    assert versions["arq"]["arq"] == "0.28.0"
    assert "conveyor" in versions["conveyor"]


@pytest.mark.slow
@pytest.mark.parametrize("peer", PEERS)
def test_drains_are_counted_and_measured(smoke_records: list[dict[str, Any]],
                                         peer: str) -> None:
    for workload in DRAINS:
        rec = find(smoke_records, peer, workload)
        assert rec["n"] == 1_000
        assert float(rec["per_s"]) > 0
        # /proc counts CPU in 10 ms ticks: a 1,000-job burst at concurrency 1,000 may read 0
        assert float(rec["cpu_us_per_job"]) > (0 if workload == "noop_drain" else -1)
        assert float(rec["cmds_per_job"]) >= 1  # the peer's own traffic reached the broker
        assert float(rec["rss_peak_mb"]) > 5
        assert 0 < float(rec["pss_peak_mb"]) <= float(rec["rss_peak_mb"])
        assert len(rec["load_before"]) == 3


@pytest.mark.slow
@pytest.mark.parametrize("peer", PEERS)
def test_enqueue_latency_and_long_jobs(smoke_records: list[dict[str, Any]], peer: str) -> None:
    assert float(find(smoke_records, peer, "noop_enqueue_single")["per_s"]) > 0
    latency = find(smoke_records, peer, "pickup_latency")
    assert latency["samples"] == 10
    assert 0 < float(latency["p50_ms"]) <= float(latency["p99_ms"])
    many = find(smoke_records, peer, "async_1s_10k")
    assert 0 < float(many["pct_of_ideal"]) <= 100


@pytest.mark.slow
def test_conveyor_bulk_enqueue_and_limits(smoke_records: list[dict[str, Any]]) -> None:
    assert float(find(smoke_records, "conveyor", "noop_enqueue_bulk")["per_s"]) > 0
    limits = find(smoke_records, "machine", "limits")
    assert float(limits["python_sync_ping_per_s"]) > 0
