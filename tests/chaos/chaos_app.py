"""The jobs chaos workers run. Each one writes ``start`` and ``finish`` to the ledger.

Worker processes are started with ``--app chaos.chaos_app:app`` and these variables:
``CHAOS_LEDGER_URL`` (the ledger server), ``CHAOS_LABEL`` (which worker process this is; executor
children inherit it) and ``CHAOS_EXECUTORS`` (comma-separated kinds among thread, asyncio,
process, fork, http; default ``thread,asyncio``). Only the listed kinds are registered, because a
worker starts a pool for every kind its app uses and a process pool per worker is costly in CI.

With ``http`` the worker also needs ``--sidecar-command`` (the rig passes
``procs.SIDECAR_COMMAND``): it launches ``conveyor sidecar`` serving this same app, which inherits
the worker's environment, so the sidecar's jobs write to the ledger under the worker's label
with the sidecar's pid.

Every job takes the uid the test gave it as its first argument (also used as its jid), so the
ledger never depends on what the system under test reports.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from conveyor import App, current_job

from .ledger import Ledger

app = App()
_ledgers: dict[int, Ledger] = {}
KINDS = frozenset(os.environ.get("CHAOS_EXECUTORS", "thread,asyncio").split(","))


def record(kind: str, uid: str) -> None:
    pid = os.getpid()
    ledger = _ledgers.get(pid)
    if ledger is None:
        ledger = _ledgers[pid] = Ledger(os.environ["CHAOS_LEDGER_URL"])
    try:
        attempt: Any = current_job().attempt
    except RuntimeError:
        attempt = "-"
    ledger.record(kind, uid, os.environ.get("CHAOS_LABEL", "-"), pid, attempt)


def _sleep_job(uid: str, ms: int) -> int:
    record("start", uid)
    time.sleep(ms / 1000)
    record("finish", uid)
    return ms


async def _async_job(uid: str, ms: int) -> int:
    record("start", uid)
    await asyncio.sleep(ms / 1000)
    record("finish", uid)
    return ms


def _padded(uid: str, ms: int, pad: str) -> int:
    """A job with a large argument, for the backlog scenarios (``pad`` only takes room)."""
    return _sleep_job(uid, ms)


def _fail(uid: str, ms: int = 0) -> None:
    record("start", uid)
    time.sleep(ms / 1000)
    record("finish", uid)
    raise RuntimeError(f"job {uid} fails on purpose")


def cron_uid(entry: str, slot_ms: int, jid: str) -> str:
    """The ledger uid of one run of a periodic job: which slot, and which firing (a jid per
    firing, kept by reruns). ``parse_cron_uid`` reads it back."""
    return f"cron:{entry}:{slot_ms}:{jid}"


def parse_cron_uid(uid: str) -> tuple[str, int, str] | None:
    parts = uid.split(":")
    if len(parts) != 4 or parts[0] != "cron":
        return None
    return parts[1], int(parts[2]), parts[3]


def _cron_tick(entry: str, ms: int) -> int:
    """The job a periodic entry fires; the slot comes from the payload ``cron_fire.lua`` wrote."""
    job = current_job()
    return _sleep_job(cron_uid(entry, round(float(job.payload["cron_slot"]) * 1000), job.jid), ms)


def _crash(uid: str) -> None:
    record("start", uid)
    os._exit(17)


if "thread" in KINDS:
    app.job(_sleep_job, name="work", executor="thread")
    app.job(_padded, name="padded", executor="thread")
    app.job(_crash, name="crash", executor="thread", retry=25)
    app.job(_fail, name="fail", executor="thread", retry=0)
    app.job(_cron_tick, name="cron_tick", executor="thread")

if "asyncio" in KINDS:
    app.job(_async_job, name="work_async")

    @app.job(name="block_loop")
    async def block_loop(uid: str, ms: int) -> int:
        """Spins on the event loop itself (no await, holding the GIL but for the interpreter's
        switch interval) for ``ms``: the heartbeat thread must still renew the lease."""
        record("start", uid)
        end = time.monotonic() + ms / 1000
        while time.monotonic() < end:
            pass
        record("finish", uid)
        return ms

if "http" in KINDS:
    app.job(_sleep_job, name="work_http", executor="http")

for _kind in ("process", "fork"):
    if _kind in KINDS:
        app.job(_sleep_job, name=f"work_{_kind}", executor=_kind)
        app.job(_crash, name=f"crash_{_kind}", executor=_kind, retry=25)
