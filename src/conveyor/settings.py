"""Settings: every interval, TTL and limit with its unit in its name, and where Redis is.

Values come from keyword arguments, then ``CONVEYOR_*`` environment variables, then the defaults
below. With no ``CONVEYOR_REDIS_URL`` the embedded server in the data folder is used (started on
demand, see ``embedded.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

# Leases: a worker renews its lease every HEARTBEAT_INTERVAL_S; a worker silent for LEASE_TTL_S
# is presumed dead and its jobs are requeued by any other worker's recoverer.
LEASE_TTL_S = 10.0
HEARTBEAT_INTERVAL_S = 2.0
RECOVERER_INTERVAL_S = 2.0
MAX_RECOVERIES = 3  # a job that lost its worker this many times goes to the dead set
RECOVERIES_WINDOW_S = 72 * 3600

SCHEDULER_INTERVAL_S = 1.0
SCHEDULER_BATCH = 500
IDLE_BLOCK_S = 1.0  # how long an idle worker blocks on Redis before checking for shutdown
REDIS_TIMEOUT_S = 5.0  # a Redis command with no answer by then fails (as "unreachable")

STATUS_TTL_S = 7 * 24 * 3600
MAX_RESULT_BYTES = 512 * 1024
MAX_ERROR_MESSAGE_CHARS = 10_000  # as Sidekiq

DEAD_MAX_JOBS = 10_000  # as Sidekiq
DEAD_TIMEOUT_S = 180 * 24 * 3600
MAX_RETRIES = 25
SHUTDOWN_GRACE_S = 25.0
DEFAULT_CONCURRENCY = 10
PROCESS_TTL_S = 60  # Sidekiq's process hash TTL
DEFAULT_DATA_DIR = ".conveyor"
UNKNOWN_CLASSES = "dead"  # or "hand_back": what a worker does with a class it has no handler for

PRIORITY_QUEUES = {"high": "high", "normal": "default", "low": "low"}
PRIORITY_WEIGHTS = {"high": 3, "default": 2, "low": 1}


def _env(name: str) -> str | None:
    value = os.environ.get(f"CONVEYOR_{name.upper()}")
    return value if value not in (None, "") else None


@dataclass(frozen=True)
class Settings:
    """Runtime settings of an app, a worker or a CLI command."""

    redis_url: str | None = None
    namespace: str = ""
    data_dir: Path = field(default_factory=lambda: Path(DEFAULT_DATA_DIR))
    lease_ttl_s: float = LEASE_TTL_S
    heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S
    recoverer_interval_s: float = RECOVERER_INTERVAL_S
    max_recoveries: int = MAX_RECOVERIES
    scheduler_interval_s: float = SCHEDULER_INTERVAL_S
    idle_block_s: float = IDLE_BLOCK_S
    redis_timeout_s: float = REDIS_TIMEOUT_S
    status_ttl_s: int = STATUS_TTL_S
    dead_max_jobs: int = DEAD_MAX_JOBS
    dead_timeout_s: int = DEAD_TIMEOUT_S
    max_retries: int = MAX_RETRIES
    shutdown_grace_s: float = SHUTDOWN_GRACE_S
    unknown_classes: str = UNKNOWN_CLASSES
    allow_eviction: bool = False  # run on a Redis whose maxmemory-policy can drop jobs
    # > 0: an enqueue returns only once Redis has fsynced the jobs to its AOF (WAITAOF; Redis
    # 7.2+ or Valkey, appendonly yes), waiting at most this long; 0: once Redis has them
    wait_aof_s: float = 0.0

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Defaults, overridden by ``CONVEYOR_*`` variables, overridden by keyword arguments."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = _env(f.name)
            if raw is None:
                continue
            if f.name == "data_dir":
                values[f.name] = Path(raw)
            elif f.type in ("float",):
                values[f.name] = float(raw)
            elif f.type in ("int",):
                values[f.name] = int(raw)
            elif f.type in ("bool",):
                values[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
            else:
                values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "data_dir" in values:
            values["data_dir"] = Path(values["data_dir"])
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)
