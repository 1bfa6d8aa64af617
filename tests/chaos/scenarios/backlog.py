"""Scenario 10 (the Redis side): a backlog with no worker against a Redis with ``maxmemory``.

Jobs of ``job_bytes`` are submitted until Redis refuses them (or ``max_jobs``). With
``noeviction`` Redis refuses writes when full, so every acknowledged job must still be in its
queue and nothing is evicted. With an evicting policy (``allkeys-lru``) Redis makes room by
deleting keys, queues included: acknowledged jobs vanish. That is why a worker must refuse to
start on such a policy unless told otherwise (the startup check of issue 9).
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from conveyor.errors import BrokerError
from conveyor.job import new_jid

from ..apiproc import ApiProc
from ..procs import wait_until
from ..results import drain
from ..rig import Rig, job
from .api import CLIENT_TIMEOUT_S, _headers

BATCH = 50


def run(rig: Rig, *, maxmemory: str, policy: str, job_bytes: int = 10_000,
        max_jobs: int = 5_000) -> dict[str, Any]:
    rig.r.config_set("maxmemory", maxmemory)
    rig.r.config_set("maxmemory-policy", policy)
    pad = "x" * job_bytes
    errors: list[str] = []
    while len(rig.history.attempted) < max_jobs:
        before = len(rig.history.acknowledged)
        rig.submit([job("work", new_jid(), 0, pad) for _ in range(BATCH)])
        if len(rig.history.acknowledged) == before:
            errors.append("refused")
            if len(errors) >= 3:
                break
    try:
        rig.app.enqueue_many([job("work", new_jid(), 0, pad) for _ in range(BATCH)])
        client_error = ""
    except BrokerError as exc:
        client_error = str(exc)
    stored = set()
    for raw in rig.r.lrange("queue:default", 0, -1):
        stored.add(raw[raw.index(b'"jid":"') + 7:][:24].decode())
    info = rig.r.info("stats")
    acked = rig.history.acknowledged
    return {"scenario": "backlog_maxmemory", "maxmemory": maxmemory, "policy": policy,
            "job_bytes": job_bytes, "acknowledged": len(acked),
            "refused_or_indeterminate": len(rig.history.indeterminate | rig.history.failed),
            "acknowledged_missing": len(acked - stored),
            "evicted_keys": int(info["evicted_keys"]), "client_error": client_error[:200],
            "used_memory": int(rig.r.info("memory")["used_memory"])}


def _oom_refusals(rig: Rig) -> int:
    """How many commands Redis refused for lack of memory (``INFO errorstats``)."""
    stats = rig.r.info("errorstats")
    return int(stats.get("errorstat_OOM", {}).get("count", 0))


def api_pushback(rig: Rig, api: ApiProc, *, maxmemory: str, job_bytes: int = 10_000,
                 max_jobs: int = 5_000) -> dict[str, Any]:
    """Submit large jobs through the API until it pushes back, then let one worker drain them.

    The API must answer 503 ``redis_full`` before Redis itself refuses a write; every job it
    accepted must be in its queue; a worker must drain them all on the nearly full Redis (its
    scripts run with ``allow-oom``); and submissions must be accepted again afterwards.
    """
    rig.r.config_set("maxmemory", maxmemory)
    rig.r.config_set("maxmemory-policy", "noeviction")
    pad = "x" * job_bytes
    accepted: list[str] = []
    refusal: dict[str, Any] = {}
    with httpx.Client(base_url=api.url, headers=_headers(), timeout=CLIENT_TIMEOUT_S) as client:
        while len(accepted) < max_jobs:
            uid = new_jid()
            resp = client.post("/api/v1/jobs", json={"type": "padded", "args": [uid, 0, pad]})
            if resp.status_code != 202:
                refusal = {"status": resp.status_code, "code": resp.json().get("error"),
                           "retry_after": resp.headers.get("Retry-After")}
                break
            accepted.append(resp.json()["job_id"])
        oom_before_pushback = _oom_refusals(rig)
        used = rig.r.info("memory")
        stored = {raw[raw.index(b'"jid":"') + 7:][:24].decode()
                  for raw in rig.r.lrange("queue:default", 0, -1)}
        worker = rig.worker("w1", concurrency=8)
        began = time.monotonic()
        drain(rig.r, 120)
        drained_s = time.monotonic() - began
        wait_until(lambda: all(rig.r.hget(f"conveyor:job:{jid}", "state") == b"completed"
                               for jid in accepted), 30, "every accepted job completed")
        time.sleep(1.0)  # the API's memory reading is at most 0.5 s old: let it see the room
        after = client.post("/api/v1/jobs", json={"type": "padded", "args": [new_jid(), 0, "x"]})
    return {"scenario": "backlog_api_pushback", "maxmemory": maxmemory, "job_bytes": job_bytes,
            "accepted": len(accepted), "refusal": refusal,
            "used_memory_at_refusal": int(used["used_memory"]),
            "maxmemory_bytes": int(used["maxmemory"]),
            "oom_refusals_before_pushback": oom_before_pushback,
            "accepted_missing": len(set(accepted) - stored),
            "drained_s": round(drained_s, 2), "worker_alive": worker.alive,
            "oom_refusals_total": _oom_refusals(rig), "accepted_after_drain": after.status_code}
