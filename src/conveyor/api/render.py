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
    seconds = value / 1000 if value > 10**11 else value  # Sidekiq 8 and flow control use ms
    delta = datetime.now(UTC).timestamp() - seconds
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


# Control characters (ANSI escapes, NUL...) and bidirectional overrides (which can make text
# read backwards) are shown as \uXXXX instead of being sent to the browser; tab and newline stay.
_INVISIBLE = {c: f"\\u{c:04x}" for c in [*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F,
                                          *range(0x80, 0xA0), 0x200E, 0x200F,
                                          *range(0x202A, 0x202F), *range(0x2066, 0x206A)]}


def visible(value: Any) -> Any:
    """What every ``{{ expression }}`` goes through before Jinja escapes it."""
    return value.translate(_INVISIBLE) if isinstance(value, str) else value


ENV = Environment(loader=FileSystemLoader(WEB_DIR / "templates"), autoescape=True,
                  undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                  finalize=visible)
ENV.filters.update(json=_json, pretty=_pretty, ts=_ts, ago=_ago, kib=_bytes)


def render(name: str, **context: Any) -> str:
    return ENV.get_template(name).render(**context)
