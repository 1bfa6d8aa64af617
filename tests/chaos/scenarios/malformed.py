"""Scenarios 8 and 9: garbage and hostile entries written straight into a queue.

Each entry of :func:`entries` is pushed raw into ``queue:default`` between valid jobs. Every
one must end in the dead set with a reason (``MalformedJob`` or ``UnknownJobType``), no code
named by the entry may run (marker files stay absent, and a module named by job data is never
imported: ``chaos_marker_mod`` creates a marker when imported), the worker must keep going, the
valid jobs must all finish, nothing may stay in flight, and the worker's log lines stay short.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from pathlib import Path
from typing import Any

from conveyor.job import new_jid

from ..ledger import runs
from ..procs import wait_until
from ..results import drain, pending_jobs
from ..rig import Rig, job

BIG_BYTES = 5 * 1024 * 1024
DEPTH = 100_000
MAX_LOG_LINE_CHARS = 2_000
MARKER_MODULE = "chaos_marker_mod"


class _Touch:
    """Unpickling this runs ``os.system('touch <path>')``: what a pickle-trusting worker does."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.path}",))


def entries(markers: Path) -> list[tuple[str, str, bytes]]:
    """(name, expected dead reason, raw bytes) for every hostile entry."""
    jid = new_jid
    sh = f"touch {markers / 'shell'}"
    malformed = [
        ("truncated_json", b'{"class":"work","args":["x",'),
        ("not_an_object", b"[1,2,3]"),
        ("null", b"null"),
        ("class_not_string", json.dumps({"class": 123, "args": [], "jid": jid()}).encode()),
        ("args_not_list", json.dumps({"class": "work", "args": "x", "jid": jid()}).encode()),
        ("kwargs_not_object", json.dumps({"class": "work", "args": [], "kwargs": [1],
                                          "jid": jid()}).encode()),
        ("retry_count_not_int", json.dumps({"class": "work", "args": [jid(), 1], "jid": jid(),
                                            "retry_count": "abc"}).encode()),
        ("timeout_not_number", json.dumps({"class": "work", "args": [jid(), 1], "jid": jid(),
                                           "timeout": "abc"}).encode()),
        ("invalid_utf8", b'{"class":"work","args":["\xff\xfe\xfd"],"jid":"' + jid().encode()
         + b'"}'),
        ("depth_bomb", b"[" * DEPTH + b"]" * DEPTH),
        ("depth_bomb_in_args", b'{"class":"work","jid":"' + jid().encode() + b'","args":'
         + b"[" * DEPTH + b"]" * DEPTH + b"}"),
        ("five_mb_truncated", b'{"class":"work","args":["' + b"A" * BIG_BYTES),
        ("pickle", pickle.dumps(_Touch(str(markers / "pickle")))),
    ]
    unknown = [
        ("os_system", {"class": "os.system", "args": [sh]}),
        ("builtins_exec", {"class": "builtins.exec",
                           "args": [f"open({str(markers / 'exec')!r}, 'w')"]}),
        ("dotted_path_real_function", {"class": "chaos.chaos_app._crash", "args": ["x"]}),
        ("module_import", {"class": f"{MARKER_MODULE}.run", "args": []}),
        ("five_mb_type_name", {"class": "X" * BIG_BYTES, "args": []}),
    ]
    out = [(name, "MalformedJob", raw) for name, raw in malformed]
    out += [(name, "UnknownJobType", json.dumps({**body, "jid": jid()}).encode())
            for name, body in unknown]
    return out


def write_marker_module(folder: Path, markers: Path) -> None:
    (folder / f"{MARKER_MODULE}.py").write_text(
        f"open({str(markers / 'imported')!r}, 'w').close()\n\ndef run():\n    pass\n")


def run(rig: Rig, *, valid_between: int = 5, timeout_s: float = 60.0,
        settle_s: float = 3.0) -> dict[str, Any]:
    markers = rig.log_dir / "markers"
    markers.mkdir(exist_ok=True)
    write_marker_module(rig.log_dir, markers)
    hostile = entries(markers)
    valid: list[str] = []
    for _, _, raw in hostile:
        uids = [new_jid() for _ in range(valid_between)]
        rig.submit([job("work", u, 1) for u in uids])
        valid += uids
        rig.r.lpush("queue:default", raw)
    began = time.monotonic()
    w = rig.worker("m", concurrency=4, env={"PYTHONPATH": f"{rig.log_dir}"})
    wait_until(lambda: _finished(rig, valid) == len(valid) or not w.alive, timeout_s,
               "the valid jobs to finish")
    try:  # the hostile entries were all fetched before the last valid job: give them a moment
        wait_until(lambda: rig.r.zcard("dead") >= len(hostile), settle_s, "the dead set")
        drain(rig.r, settle_s)
    except AssertionError:
        pass  # reported below: entries not dead-lettered, or jobs left pending
    elapsed = time.monotonic() - began
    finished = runs(rig.ledger.events(), "finish")
    by_reason: dict[str, int] = {}
    for raw in rig.r.zrange("dead", 0, -1):
        reason = str(json.loads(raw).get("error_class"))
        by_reason[reason] = by_reason.get(reason, 0) + 1
    lines = w.log_path.read_text(errors="replace").splitlines()
    return {"scenario": "malformed_entries", "injected": len(hostile),
            "expected_dead": _count(hostile), "dead_by_reason": by_reason,
            "valid_jobs": len(valid), "valid_finished": sum(1 for u in valid if finished[u]),
            "hostile_runs": sum(n for u, n in finished.items() if u not in valid),
            "markers": sorted(p.name for p in markers.iterdir()),
            "worker_alive": w.alive, "pending": pending_jobs(rig.r),
            "retrying": [json.loads(r).get("error_message", "")[:120]
                         for r in rig.r.zrange("retry", 0, -1)],
            "in_flight": sum(int(rig.r.hlen(k)) for k in rig.r.scan_iter("conveyor:inflight:*")),
            "log_lines": len(lines), "log_line_max_chars": max(map(len, lines), default=0),
            "log_bytes": sum(map(len, lines)), "seconds": round(elapsed, 2)}


def _finished(rig: Rig, uids: list[str]) -> int:
    finished = runs(rig.ledger.events(frozenset({"finish"})), "finish")
    return sum(1 for u in uids if finished[u])


def _count(hostile: list[tuple[str, str, bytes]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for _, reason, _ in hostile:
        out[reason] = out.get(reason, 0) + 1
    return out
