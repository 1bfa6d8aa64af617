"""Helpers for table-driven tests of the flow scripts: whole-state snapshots with every
timestamp (seconds or ms, alone or inside a member) replaced by a marker."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from conveyor.broker import SyncBroker
from redis_state import snapshot

W = "host:1:abc"
_MS = re.compile(r"\b1\d{12}\b")
_S = re.compile(r"\b1\d{9}\.\d+\b")
_BUCKET = re.compile(r'"([sf])\d{5,}"')


def job(jid: str, cls: str = "T", queue: str = "default", **extra: Any) -> bytes:
    body = {"retry": True, "queue": queue, "class": cls, "args": [1], "jid": jid,
            "created_at": 1795320861.5, **extra, "enqueued_at": 1795320861.5}
    return json.dumps(body, separators=(",", ":")).encode()


def parsed(raw: bytes) -> Any:
    out = json.loads(raw)
    return {k: ("<ts>" if k.endswith("_at") else v) for k, v in out.items()}


def state(r: redis.Redis) -> Any:
    """``snapshot`` with ms timestamps and seconds inside strings normalised too."""
    text = json.dumps(snapshot(r), sort_keys=True)
    return json.loads(_BUCKET.sub(r'"\1<bucket>"', _S.sub("<ts>", _MS.sub("<ms>", text))))


@dataclass
class Case:
    name: str
    seed: Callable[[redis.Redis, SyncBroker], Any]
    op: Callable[[SyncBroker], Any]
    result: Any
    state: dict[str, Any]


def run_case(case: Case, broker: SyncBroker, r: redis.Redis) -> None:
    case.seed(r, broker)
    assert case.op(broker) == case.result
    assert state(r) == case.state


def lease(r: redis.Redis, b: SyncBroker, wid: str = W) -> None:
    b.register(wid, json.dumps({"queues": ["default"]}).encode())


def inflight(r: redis.Redis, b: SyncBroker, raw: bytes | None = None) -> None:
    """A leased worker W holding one job ``a`` under token 1."""
    lease(r, b)
    r.lpush("queue:default", raw or job("a"))
    b.fetch(W, ["default"], 1)


LEASED = {"conveyor:leases": {"zset": [[W, "<ms>"]]},
          "conveyor:workers": {"set": [W]},
          "conveyor:worker-info": {"hash": {W: {"queues": ["default"]}}}}
