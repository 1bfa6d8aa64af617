"""A rig: the Redis under test (AOF on, its own data folder), an optional proxy in front of it,
the ledger, worker processes and a submitting client with its history.

Workers and the client reach Redis through ``rig.url`` (the proxy when there is one); the test
inspects Redis directly through ``rig.r``, which no fault reaches except a Redis kill. Closing
the rig stops, in order, the workers it started, the proxy and the Redis server.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import redis

from conveyor import App, EnqueueRequest
from conveyor.errors import SerializationError
from conveyor.settings import SHUTDOWN_GRACE_S, Settings

from .ledger import History, Ledger
from .procs import FAST_ENV, SIDECAR_COMMAND, TESTS_DIR, Fleet, WorkerProc
from .proxy import Proxy

if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))
from redis_server import RedisServer

SUBMIT_BATCH = 500


class Rig:
    def __init__(self, ledger_url: str, *, env: Mapping[str, str] | None = None,
                 proxy: bool = False, appendonly: bool = True, executors: str = "thread,asyncio",
                 log_dir: Path | None = None, redis_config: Mapping[str, str] | None = None,
                 appendfsync: str = "everysec", sidecar_command: str = SIDECAR_COMMAND) -> None:
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="conveyor-chaos-"))
        self.server = RedisServer(appendonly=appendonly, appendfsync=appendfsync)
        self.server.start()
        self.r = redis.Redis.from_url(self.server.url)
        for name, value in (redis_config or {}).items():
            self.r.config_set(name, value)
        self.proxy = Proxy(self.server.port) if proxy else None
        self.url = self.proxy.url if self.proxy else self.server.url
        self.env = {**(FAST_ENV if env is None else env), "CHAOS_EXECUTORS": executors}
        # workers of an app with http jobs launch their own sidecar
        self.sidecar_command = sidecar_command if "http" in executors.split(",") else None
        self.ledger = Ledger(ledger_url)
        self.ledger.reset()
        self.history = History()
        self.app = App(settings=Settings(redis_url=self.url))
        self.workers: list[WorkerProc] = []
        self.fleets: list[Fleet] = []

    def worker(self, label: str, **options: Any) -> WorkerProc:
        env = {**self.env, **options.pop("env", {})}
        url = options.pop("redis_url", self.url)
        options.setdefault("sidecar_command", self.sidecar_command)
        w = WorkerProc(label, url, self.ledger.url, self.log_dir, env=env, **options)
        self.workers.append(w)
        return w

    def fleet(self, n: int, **options: Any) -> Fleet:
        fleet = Fleet(n, lambda label: self.worker(label, **options))
        self.fleets.append(fleet)
        return fleet

    def submit(self, reqs: Sequence[EnqueueRequest]) -> list[str]:
        """Enqueue in batches, recording each id as acknowledged, failed or indeterminate."""
        uids: list[str] = []
        for i in range(0, len(reqs), SUBMIT_BATCH):
            batch = list(reqs[i : i + SUBMIT_BATCH])
            ids = [str(r.jid) for r in batch]
            try:
                self.app.enqueue_many(batch)
            except (SerializationError, ValueError):
                self.history.add("failed", ids)
            except Exception:
                self.history.add("indeterminate", ids)
            else:
                self.history.add("acknowledged", ids)
            uids += ids
        return uids

    def logs(self) -> str:
        return "\n".join(f"--- {w.label} (pid {w.pid})\n{w.log_tail()}" for w in self.workers)

    def close(self) -> None:
        # A stuck job thread can keep a stopping worker alive (finding F1), so waiting is
        # bounded by the grace period plus a margin, then KILL.
        grace = float(self.env.get("CONVEYOR_SHUTDOWN_GRACE_S", SHUTDOWN_GRACE_S)) + 3.0
        for w in self.workers:
            w.begin_close()
        for w in self.workers:
            w.close(grace)
        self.app.close()
        self.r.close()
        self.ledger.close()
        if self.proxy:
            self.proxy.close()
        self.server.close()


def job(name: str, uid: str, *args: Any, **options: Any) -> EnqueueRequest:
    """A request whose jid is the ledger uid (and the job's first argument)."""
    return EnqueueRequest(name, args=[uid, *args], jid=uid, **options)


@contextlib.contextmanager
def opened(ledger_url: str, log_dir: Path, **options: Any) -> Iterator[Rig]:
    """A rig closed on exit; its worker logs are printed if the block raises."""
    rig = Rig(ledger_url, log_dir=log_dir, **options)
    try:
        yield rig
    except BaseException:
        print(rig.logs())
        raise
    finally:
        rig.close()
