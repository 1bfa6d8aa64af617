"""Side-by-side benchmarks (issue 8): Conveyor, the Python peers and Sidekiq on one Redis.

    make bench                      # every peer, 3 runs each, writes docs/benchmarks.md + plots
    make bench-smoke                # CI: small N, Conveyor + arq, one run, no docs
    .venv/bin/python bench/run.py --peers conveyor,rq --repeat 5

Starts its own Redis (no persistence) on a free port, builds each peer's venv under
/tmp/bench-venvs from ``bench/peers/pins.txt`` when missing, runs the workloads of
``bench/peers/workloads.py`` peer after peer, appends raw results to ``bench/results/peers.jsonl``,
prints a table and (unless --smoke/--no-docs) rewrites the generated part of
``docs/benchmarks.md`` and its plots.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests")]

import redis  # noqa: E402
from peers import docs, limits, report, specs, venvs  # noqa: E402
from peers.runner import Env, PeerRunner  # noqa: E402
from peers.workloads import Config, Recorder, calibrate, run_round  # noqa: E402

from redis_server import RedisServer  # noqa: E402

SMOKE = Config(repeat=1, single_n=300, bulk_n=3_000, drain_n=1_000, latency_samples=10,
               gap_ms=20.0, many_n=1_000, timeout_s=60.0)
SMOKE_PEERS = ("conveyor", "arq")
RESULTS = ROOT / "bench" / "results" / "peers.jsonl"
MAX_CLIENTS = 19_000  # SAQ opens a connection per concurrent job; Redis's default is 10,000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="small N, two peers, one run, no docs")
    ap.add_argument("--peers", help=f"comma list from {','.join(specs.ALL_PEERS)}")
    ap.add_argument("--repeat", type=int, help="runs per measurement (default 3)")
    ap.add_argument("--out", type=Path,
                    help="JSON lines file (default bench/results/peers.jsonl; smoke: a temp dir)")
    ap.add_argument("--no-docs", action="store_true", help="do not touch docs/")
    ap.add_argument("--no-limits", action="store_true", help="skip the physical-limit probes")
    ap.add_argument("--report", metavar="RUN_ID",
                    help="rebuild the table and docs from a recorded run instead of running")
    return ap.parse_args(argv)


def prepare(names: list[str], logs: Path) -> tuple[dict[str, Path | None], dict[str, object]]:
    """Build the venvs (and find Sidekiq); returns each peer's python and the versions used."""
    pythons: dict[str, Path | None] = {}
    versions: dict[str, object] = {}
    for name in names:
        spec = specs.SPECS[name]
        if name == "conveyor":
            pythons[name], versions[name] = Path(sys.executable), venvs.conveyor_versions()
        elif spec.ruby:
            found = venvs.ensure_sidekiq(logs / "apt.log")
            if found is None:
                print(f"skipping sidekiq: Ruby with Sidekiq {venvs.SIDEKIQ_VERSION} not found")
                continue
            pythons[name], versions[name] = None, found
        else:
            print(f"venv for {name} ...", flush=True)
            try:
                python = venvs.ensure(name, logs / f"pip-{name}.log")
            except (OSError, subprocess.SubprocessError) as exc:
                print(f"skipping {name}: its venv could not be built ({exc}); see {logs}")
                continue
            pythons[name], versions[name] = python, venvs.frozen(python)
    return pythons, versions


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = SMOKE if args.smoke else Config()
    if args.repeat:
        cfg = Config(**{**cfg.__dict__, "repeat": args.repeat})
    names = args.peers.split(",") if args.peers else list(
        SMOKE_PEERS if args.smoke else specs.ALL_PEERS)
    unknown = [n for n in names if n not in specs.SPECS]
    if unknown:
        raise SystemExit(f"unknown peers {unknown}; known: {', '.join(specs.ALL_PEERS)}")
    logs = Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
    # smoke results are a check, not figures to keep: they go to the temporary folder
    out = args.out or (logs / "smoke.jsonl" if args.smoke else RESULTS)
    if args.report:
        return report_only(out, args.report, args.no_docs or args.smoke)
    run_id = time.strftime("%Y%m%dT%H%M%S")
    rec = Recorder(out, run_id)
    pythons, versions = prepare(names, logs)
    with RedisServer() as server, RedisServer() as marks_server:
        r = redis.Redis.from_url(server.url, socket_timeout=None)
        m = redis.Redis.from_url(marks_server.url, socket_timeout=None)
        for client in (r, m):
            client.config_set("maxclients", MAX_CLIENTS)
        env = Env(server.url, server.pid or 0, r, marks_server.url, m, logs, cfg.timeout_s)
        rec.write({"type": "run", "smoke": args.smoke, "machine": report.machine(r),
                   "versions": versions, "config": cfg.__dict__, "logs": str(logs)})
        if not args.no_limits:
            rec.measure("machine", "limits", lambda: limits.measure(server.url, server.port,
                                                                   args.smoke))
        runners = [PeerRunner(env, specs.SPECS[name], pythons[name]) for name in pythons]
        sizes = {}
        for runner in runners:
            print(f"calibrating {runner.spec.name}", flush=True)
            sizes[runner.spec.name] = calibrate(runner, cfg, rec)
        for i in range(cfg.repeat):
            print(f"round {i + 1} of {cfg.repeat}", flush=True)
            for runner in runners:
                run_round(runner, cfg, rec, i, sizes[runner.spec.name])
        r.close()
        m.close()
    summary = report.summarise(rec.records)
    print(report.table(summary))
    if not (args.smoke or args.no_docs):
        docs.write(summary, ROOT / "docs" / "benchmarks.md", logs)
    print(f"raw results: {out} (run {run_id}); worker logs: {logs}")
    return 0


def report_only(path: Path, run_id: str, no_docs: bool) -> int:
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    records = [r for r in records if r.get("run") == run_id]
    if not records:
        raise SystemExit(f"no records of run {run_id} in {path}")
    summary = report.summarise(records)
    print(report.table(summary))
    if not no_docs:
        docs.write(summary, ROOT / "docs" / "benchmarks.md", Path(tempfile.mkdtemp()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
