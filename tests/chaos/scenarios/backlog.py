"""Scenario 10 (the Redis side): a backlog with no worker against a Redis with ``maxmemory``.

Jobs of ``job_bytes`` are submitted until Redis refuses them (or ``max_jobs``). With
``noeviction`` Redis refuses writes when full, so every acknowledged job must still be in its
queue and nothing is evicted. With an evicting policy (``allkeys-lru``) Redis makes room by
deleting keys, queues included: acknowledged jobs vanish. That is why a worker must refuse to
start on such a policy unless told otherwise (the startup check of issue 9).
"""

from __future__ import annotations

from typing import Any

from conveyor.job import new_jid

from ..rig import Rig, job

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
    stored = set()
    for raw in rig.r.lrange("queue:default", 0, -1):
        stored.add(raw[raw.index(b'"jid":"') + 7:][:24].decode())
    info = rig.r.info("stats")
    acked = rig.history.acknowledged
    return {"scenario": "backlog_maxmemory", "maxmemory": maxmemory, "policy": policy,
            "job_bytes": job_bytes, "acknowledged": len(acked),
            "refused_or_indeterminate": len(rig.history.indeterminate | rig.history.failed),
            "acknowledged_missing": len(acked - stored),
            "evicted_keys": int(info["evicted_keys"]),
            "used_memory": int(rig.r.info("memory")["used_memory"])}
