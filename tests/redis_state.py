"""Whole-state snapshots of a Redis server, for table-driven tests of the Lua scripts.

``snapshot(r)`` returns every key with its type and contents; timestamps (epoch seconds, or ms)
are replaced by ``"<ts>"``/``"<ms>"`` so expectations can be written literally, and JSON strings
are parsed so their key order does not matter.
"""

from __future__ import annotations

import json
import re
from typing import Any

import redis

_TS = re.compile(r"^1\d{9}(\.\d+)?$")
_TS_IN_JSON = re.compile(r'("(?:created_at|enqueued_at|failed_at|retried_at)":)1\d{9}(\.\d+)?')


def _norm_text(value: bytes) -> Any:
    text = value.decode("utf-8", "replace")
    if _TS.match(text):
        return "<ts>"
    if text.startswith("{") or text.startswith("["):
        try:
            return _norm_json(json.loads(text))
        except ValueError:
            return text
    if "\n" in text and "{" in text:  # "<queue>\n<raw>" entries
        head, _, raw = text.partition("\n")
        try:
            return [head, _norm_json(json.loads(raw))]
        except ValueError:
            return text
    return text


def _norm_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("<ts>" if k.endswith("_at") and isinstance(v, int | float) else _norm_json(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_norm_json(v) for v in value]
    return value


def _norm_score(score: float) -> Any:
    if score > 1e12:
        return "<ms>"
    if score > 1e9:
        return "<ts>"
    return score


def snapshot(r: redis.Redis, ttl: bool = False) -> dict[str, Any]:
    """Every key and its normalised contents (and ``ttl>0`` markers when asked)."""
    state: dict[str, Any] = {}
    for key in sorted(r.scan_iter(count=1000)):
        kind = r.type(key).decode()
        name = key.decode()
        if kind == "string":
            value: Any = _norm_text(r.get(key))
        elif kind == "list":
            value = [_norm_text(v) for v in r.lrange(key, 0, -1)]
        elif kind == "set":
            value = sorted(v.decode() for v in r.smembers(key))
        elif kind == "zset":
            members = r.zrange(key, 0, -1, withscores=True)
            value = [[_norm_text(m), _norm_score(s)] for m, s in members]
        elif kind == "hash":
            value = {k.decode(): _norm_text(v) for k, v in sorted(r.hgetall(key).items())}
        else:
            value = f"<{kind}>"
        state[name] = {kind: value, "ttl": r.ttl(key) > 0} if ttl else {kind: value}
    return state
