"""Startup checks of the Redis server that holds the jobs (issue 9).

* ``maxmemory-policy`` must be ``noeviction``. Any other policy lets Redis delete keys when it
  is full, queues included, so jobs that were acknowledged to their producer vanish
  (``tests/chaos/test_backlog.py`` measures it). A worker refuses to start on such a server
  unless told otherwise (``allow_eviction``, ``CONVEYOR_ALLOW_EVICTION=1``), as BullMQ requires
  and Sidekiq warns.
* AOF off: a Redis restart loses every job written since the last snapshot: a warning.
* The server must be Redis 7.0 or later (or Valkey, which reports a Redis 7.2 compatible
  version): the Lua scripts start with a shebang (``broker/scripts.py`` says why), which older
  servers cannot load.

Both come from ``INFO`` (not ``CONFIG GET``, which managed Redis services often refuse); a
server that reports neither is not judged.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import ConfigurationError

log = logging.getLogger("conveyor.broker")
SAFE_POLICY = "noeviction"
MIN_REDIS_MAJOR = 7


def _major(version: object) -> int | None:
    text = version.decode() if isinstance(version, bytes) else str(version or "")
    head = text.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def check_server(redis: Any, allow_eviction: bool = False) -> list[str]:
    """Raise ConfigurationError for an evicting policy (unless allowed); return warnings."""
    server = redis.info("server")
    major = _major(server.get("redis_version"))
    if major is not None and major < MIN_REDIS_MAJOR:
        raise ConfigurationError(
            f"Redis {server.get('redis_version')} is too old: Conveyor needs Redis "
            f"{MIN_REDIS_MAJOR}.0 or later, or Valkey")
    memory = redis.info("memory")
    persistence = redis.info("persistence")
    policy = memory.get("maxmemory_policy")
    if isinstance(policy, bytes):
        policy = policy.decode()
    warnings = []
    if policy is not None and policy != SAFE_POLICY:
        message = (f"Redis maxmemory-policy is {policy!r}: when Redis is full it deletes keys, "
                   f"queues included, and acknowledged jobs are lost; set it to {SAFE_POLICY!r} "
                   "(CONFIG SET maxmemory-policy noeviction, and in redis.conf)")
        if not allow_eviction:
            raise ConfigurationError(message + ", or set CONVEYOR_ALLOW_EVICTION=1 to run anyway")
        warnings.append(message)
    if int(persistence.get("aof_enabled", 1)) == 0:
        warnings.append("Redis has AOF off: a Redis restart loses every job written since its "
                        "last snapshot; turn on appendonly yes with appendfsync everysec")
    for w in warnings:
        log.warning("%s", w)
    return warnings
