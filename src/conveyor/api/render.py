"""HTML rendering for the dashboard: one Jinja environment with autoescaping on everywhere.

Nothing is ever marked safe: job arguments, error messages and backtraces are turned into text
(JSON for structures, cut to a display limit) and escaped by Jinja. The pages carry no inline
script or style, so the Content-Security-Policy can forbid both.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from jinja2 import Environment, FileSystemLoader, StrictUndefined


WEB_DIR = Path(__file__).resolve().parent.parent / "web"
LIST_ARG_CHARS = 300  # arguments shown in a table row
DETAIL_ARG_CHARS = 100_000  # arguments shown on a job's page


def _json(value: Any, limit: int = LIST_ARG_CHARS, pretty: bool = False) -> str:
    option = orjson.OPT_INDENT_2 if pretty else 0
    try:
        text = orjson.dumps(value, option=option, default=repr).decode()
    except TypeError:
        text = repr(value)
    if len(text) > limit:
        return text[:limit] + f"... ({len(text) - limit} more characters)"
    return text


def _pretty(value: Any) -> str:
    return _json(value, DETAIL_ARG_CHARS, pretty=True)


def _ts(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        return ""
    seconds = value / 1000 if value > 10**11 else value
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        return ""
    delta = datetime.now(UTC).timestamp() - value
    future = delta < 0
    delta = abs(delta)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= size:
            text = f"{int(delta // size)}{unit}"
            break
    else:
        text = f"{delta:.0f}s"
    return f"in {text}" if future else f"{text} ago"


def _bytes(kb: Any) -> str:
    value = float(kb or 0) * 1024
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


ENV = Environment(loader=FileSystemLoader(WEB_DIR / "templates"), autoescape=True,
                  undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
ENV.filters.update(json=_json, pretty=_pretty, ts=_ts, ago=_ago, kib=_bytes)


def render(name: str, **context: Any) -> str:
    return ENV.get_template(name).render(**context)
