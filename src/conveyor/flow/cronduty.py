"""The cron duty: fires the due slots of every periodic job, exactly once across schedulers.

Every worker runs one (with its scheduler), and ``conveyor cron run --app ...`` runs it alone.
Each tick reads the entries (the app's own, published for the admin views, plus those added at
run time), the Redis clock and each entry's last fired slot, and calls ``cron_fire.lua`` for each
due slot; the script's compare-and-set makes a slot fire once however many duties try it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..job import build_payload, dumps, loads, new_jid, stamp_enqueued
from ..worker.duty import Duty
from .cron import CronEntry

if TYPE_CHECKING:
    from ..app import App
    from ..broker import AsyncBroker

log = logging.getLogger("conveyor.cron")
CRON_TICK_S = 1.0


class CronScheduler(Duty):
    name = "cron"

    def __init__(self, broker: AsyncBroker, entries: Sequence[CronEntry] = (),
                 interval_s: float = CRON_TICK_S, retry: Mapping[str, bool | int] | None = None
                 ) -> None:
        super().__init__(interval_s)
        self.broker = broker
        self.own = {e.name: e for e in entries}
        self.retry = dict(retry or {})
        self.fired = 0
        self._published = False

    async def publish(self) -> None:
        """Store this app's entries for the admin views, keeping an entry disabled by hand."""
        key = self.broker.keys.cron_entries
        stored = await self.broker.redis.hmget(key, list(self.own)) if self.own else []
        mapping = {}
        for entry, old in zip(self.own.values(), stored, strict=True):
            data = entry.to_json()
            data["enabled"] = stored_enabled(old)
            mapping[entry.name] = dumps(data)
        if mapping:
            await self.broker.redis.hset(key, mapping=mapping)
        self._published = True

    async def entries(self) -> list[CronEntry]:
        stored = await self.broker.redis.hgetall(self.broker.keys.cron_entries)
        found: dict[str, CronEntry] = {}
        for name, raw in stored.items():
            try:
                found[name.decode()] = CronEntry.from_json(loads(raw))
            except Exception as exc:  # one bad entry must not stop the others
                log.warning("ignoring cron entry %r: %s", name, exc)
        # entries declared in code fire only where that code runs: one removed from the code
        # stays listed (until `conveyor cron rm`) but no longer fires
        found = {n: e for n, e in found.items() if e.source == "runtime" and n not in self.own}
        for name, entry in self.own.items():
            enabled = stored_enabled(stored.get(name.encode()))
            found[name] = entry if enabled else replace(entry, enabled=False)
        return [e for e in found.values() if e.enabled]

    async def tick(self) -> bool:
        if not self._published:
            await self.publish()
        entries = await self.entries()
        if not entries:
            return False
        r, k = self.broker.redis, self.broker.keys
        seconds, micros = await r.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        lasts = await r.hmget(k.cron_last, [e.name for e in entries])
        for entry, last in zip(entries, lasts, strict=True):
            if last is None:
                await self._call(entry, "init", entry.latest_slot(now_ms))
                continue
            for slot in entry.due(int(float(last)), now_ms):
                self.fired += await self._call(entry, "fire", slot)
        return False

    async def _call(self, entry: CronEntry, mode: str, slot: int) -> int:
        k, s = self.broker.keys, self.broker.settings
        raw, jid = b"", ""
        if mode == "fire":
            jid = new_jid()
            payload = build_payload(entry.job, entry.args, entry.kwargs, queue=entry.queue,
                                    retry=self.retry.get(entry.job, True), jid=jid,
                                    extra={"cron": entry.name, "cron_slot": slot / 1000})
            raw = dumps(stamp_enqueued(payload))
        args: list[Any] = [entry.name, mode, slot, k.queue_prefix, k.status_prefix,
                           s.status_ttl_s, entry.queue, raw, jid, entry.job]
        done = int(await self.broker.script("cron_fire", [k.cron_last, k.queues], args))
        if done and mode == "fire":
            log.info("cron %s fired slot %.3f as job %s", entry.name, slot / 1000, jid)
        return done


def stored_enabled(raw: bytes | None) -> bool:
    """Whether a stored entry is enabled (an entry paused by hand stays paused)."""
    try:
        return raw is None or loads(raw).get("enabled") is not False
    except ValueError:
        return True


def duty_for(app: App, broker: AsyncBroker, interval_s: float = CRON_TICK_S) -> CronScheduler:
    """The cron duty of an app: its declared entries plus whatever was added at run time."""
    entries = list(getattr(app, "cron_entries", {}).values())
    retry = {name: spec.retry for name, spec in app.registry.items()}
    return CronScheduler(broker, entries, interval_s, retry)


async def run_cron(app: App, url: str, stop: asyncio.Event, interval_s: float = CRON_TICK_S
                   ) -> CronScheduler:
    """Run only the cron duty until ``stop`` is set (``conveyor cron run``)."""
    from ..broker import AsyncBroker

    broker = AsyncBroker(url, app.settings)
    duty = duty_for(app, broker, interval_s)
    task = asyncio.create_task(duty.run())
    try:
        await stop.wait()
    finally:
        duty.stop()
        await task
        await broker.close()
    return duty
