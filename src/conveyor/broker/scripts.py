"""Lua scripts: loaded from the ``.lua`` files beside this module, each with a contract header.

Scripts that push an existing job back into a queue are prefixed with ``_stamp.lua`` (a shared
helper that refreshes ``enqueued_at`` without touching any other byte). Scripts where a job starts
or ends are also prefixed with ``_flow.lua`` (unique locks and workflow steps, kept atomic with
the job's move). redis-py's ``Script`` runs them with EVALSHA and reloads once on NOSCRIPT (for
example after a Redis restart).

Each script starts with a shebang (Redis 7.0 and later, Valkey), because without one Redis checks
``maxmemory`` command by command *inside* a script: on a full Redis a script could then stop
half-way (an ack that dropped the in-flight entry but could not complete the status record),
and Redis scripts have no rollback. With a shebang the check happens once, before the script
starts. Scripts that bring new jobs in (``_PRODUCING``) are refused whole on a full Redis; the
others move or remove jobs and must keep running so workers can drain the backlog, so they carry
``allow-oom`` (issue 9, scenario 10: ``tests/chaos/test_backlog.py``).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

SCRIPT_NAMES = (
    "enqueue",
    "fetch",
    "ack",
    "fail",
    "promote",
    "register",
    "renew",
    "recover",
    "bury",
    "requeue",
    "cancel",
    "cancelled",
    "hand_back",
    # flow control, cron and workflows (conveyor.flow)
    "admit",
    "breaker_record",
    "cron_fire",
    "workflow_start",
)
_STAMPED = frozenset({"enqueue", "promote", "recover", "requeue", "cron_fire"})
_FLOW = frozenset({"ack", "fail", "fetch", "promote", "bury", "workflow_start"})
_PRODUCING = frozenset({"enqueue", "cron_fire", "workflow_start"})


def _shebang(name: str) -> str:
    return "#!lua\n" if name in _PRODUCING else "#!lua flags=allow-oom\n"


@cache
def source(name: str) -> str:
    """The Lua source of script ``name``, with its shared helpers prepended."""
    if name not in SCRIPT_NAMES:
        raise KeyError(f"no Lua script named {name!r}")
    folder = resources.files(__package__).joinpath("scripts")
    text = folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    if name in _FLOW:
        text = folder.joinpath("_flow.lua").read_text(encoding="utf-8") + "\n" + text
    if name in _STAMPED or name in _FLOW:
        text = folder.joinpath("_stamp.lua").read_text(encoding="utf-8") + "\n" + text
    return _shebang(name) + text
