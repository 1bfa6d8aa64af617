"""Full-size chaos runs with shipping defaults (issue 9): the headline reliability figures.

    .venv/bin/python bench/chaos/run.py churn recovery recovery_http shutdown fencing restart \
        unreachable_10s poison schedule api_kill soak [--out bench/chaos/results.jsonl] [--fast]

Each named scenario runs once on its own Redis (AOF on) with a ledger Redis beside it, using
the scenario modules of ``tests/chaos/scenarios`` at the sizes of the issue, and appends one
JSON line per run to ``--out``. No CONVEYOR_* timing variable is set, so workers run with the
defaults they ship with (lease 10 s, heartbeat 2 s, recoverer 2 s, grace 25 s); ``--fast``
uses the CI settings instead, to try a change quickly. See docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from chaos.apiproc import ApiProc  # noqa: E402
from chaos.procs import FAST_ENV  # noqa: E402
from chaos.results import write_result  # noqa: E402
from chaos.rig import Rig, opened  # noqa: E402
from chaos.scenarios import (  # noqa: E402
    api,
    churn,
    fencing,
    outage,
    poison,
    recovery,
    schedule,
    shutdown,
    soak,
)
from redis_server import RedisServer, free_port  # noqa: E402

DEFAULT_LEASE_S = 10.0
DEFAULT_BEAT_S = 2.0
ALL_EXECUTORS = "thread,asyncio,process,fork"
# The periodic entry of ``schedule``: a grace shorter than the 10 s outage, so the outage's
# slots are fired by catch_up="all" (the 60 s default would fire them as merely late).
CRON_GRACE_S = 5.0


def _recovery(rig: Rig, job_types: tuple[str, ...]) -> list[dict[str, Any]]:
    rounds = int(os.environ.get("CHAOS_RECOVERY_ROUNDS", "10"))
    return [recovery.run(rig, job_type=t, rounds=rounds, beat_s=DEFAULT_BEAT_S, timeout_s=60,
                         job_s=3 * DEFAULT_LEASE_S, concurrency=8)
            for t in job_types]


def _api_kill(rig: Rig) -> dict[str, Any]:
    port = free_port()
    return api.killed(rig, lambda: ApiProc(rig.url, port, rig.log_dir), kills=10, every_s=3.0,
                      down_s=1.0, clients=8)


SCENARIOS: dict[str, tuple[dict[str, Any], Callable[[Rig], Any]]] = {
    "churn": ({}, lambda rig: churn.run(rig, jobs=10_000, workers=4, concurrency=4,
                                        duration_s=60, kill_every_s=2, drain_timeout_s=600)),
    "recovery": ({"executors": ALL_EXECUTORS}, lambda rig: _recovery(
        rig, ("work", "work_async", "work_process", "work_fork"))),
    # its own run: with http in the app every worker would launch a sidecar
    "recovery_http": ({"executors": "http"}, lambda rig: _recovery(rig, ("work_http",))),
    "shutdown": ({}, lambda rig: shutdown.run(rig, grace_s=25.0, long_s=40.0, long_jobs=4,
                                              short_jobs=100, concurrency=8, kill_margin_s=20)),
    "fencing": ({}, lambda rig: [fencing.zombie(rig, variant="sigstop", pause_s=30)]),
    "fencing_partition": ({}, lambda rig: [fencing.zombie(rig, variant="partition",
                                                          pause_s=30)]),
    "busy_loop": ({"executors": "asyncio"}, lambda rig: fencing.busy_loop(rig, pause_s=30)),
    "restart": ({}, lambda rig: outage.restart(rig, kills=2, down_s=2.0, every_s=20.0,
                                               rate=500.0, concurrency=10)),
    "unreachable_10s": ({"proxy": True}, lambda rig: outage.unreachable(
        rig, outage_s=10.0, mode="blackhole", rate=200.0, concurrency=10)),
    "unreachable_5s": ({"proxy": True}, lambda rig: outage.unreachable(
        rig, outage_s=5.0, mode="blackhole", rate=200.0, concurrency=10)),
    "unreachable_reset_10s": ({"proxy": True}, lambda rig: outage.unreachable(
        rig, outage_s=10.0, mode="reset", rate=200.0, concurrency=10)),
    "poison": ({"executors": "thread"}, lambda rig: poison.run(
        rig, poison_type="crash", normal_jobs=1000, timeout_s=300)),
    "poison_process": ({"executors": "thread,process"}, lambda rig: poison.run(
        rig, poison_type="crash_process", normal_jobs=1000, timeout_s=120)),
    "schedule": ({"proxy": True}, lambda rig: schedule.run(
        rig, schedulers=3, one_offs=1000, span_s=300, kill_every_s=20, outage_s=10,
        every_s=1.0, catch_up="all", cron_grace_s=CRON_GRACE_S)),
    "api_kill": ({}, _api_kill),
    "soak": ({}, lambda rig: soak.run(rig, duration_s=600, rate=100, sample_every_s=30,
                                      warmup_s=120)),
    "soak_long": ({"env_extra": {"CONVEYOR_STATUS_TTL_S": "600"}}, lambda rig: soak.run(
        rig, duration_s=4 * 3600, rate=100, sample_every_s=300, warmup_s=1800)),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="+", choices=sorted(SCENARIOS))
    parser.add_argument("--out", default=str(ROOT / "bench/chaos/results.jsonl"))
    parser.add_argument("--fast", action="store_true", help="CI timings instead of defaults")
    parser.add_argument("--code", default="", help="what code ran (recorded), e.g. a commit")
    args = parser.parse_args()
    for key in [k for k in os.environ if k.startswith("CONVEYOR_")]:
        del os.environ[key]  # shipping defaults, whatever the shell exported
    env = FAST_ENV if args.fast else {}
    with RedisServer() as ledger:
        for name in args.scenarios:
            options, body = SCENARIOS[name]
            log_dir = Path(tempfile.mkdtemp(prefix=f"chaos-{name}-"))
            began = time.monotonic()
            options = dict(options)
            run_env = {**env, **options.pop("env_extra", {})}
            try:
                with opened(ledger.url, log_dir, env=run_env, **options) as rig:
                    out = body(rig)
            except Exception as exc:  # record the failure and go on with the next scenario
                out = {"scenario": name, "error": f"{type(exc).__name__}: {exc}"[:500],
                       "logs": str(log_dir)}
            for record in out if isinstance(out, list) else [out]:
                record = {"profile": "fast" if args.fast else "defaults", "run": name,
                          "code": args.code,
                          "wall_s": round(time.monotonic() - began, 1), **record}
                write_result(record, args.out)
                print(json.dumps(record, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
