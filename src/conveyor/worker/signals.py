"""Signals a worker understands, in one table. Handlers only pass the name to the worker's loop.

| signal     | effect                                                          |
|------------|-----------------------------------------------------------------|
| TERM, INT  | graceful stop: no new jobs, running ones get the grace period   |
| TSTP       | quiet: no new jobs, keep running (Sidekiq's "Quiet")            |
| TTIN, USR1 | log every thread's and task's stack                             |

Sidekiq's Web UI sends the same names through ``<identity>-signals``; the heartbeat pops them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import traceback
from collections.abc import Callable

log = logging.getLogger("conveyor.signals")

SIGNAL_TABLE: dict[str, str] = {
    "TERM": "graceful stop",
    "INT": "graceful stop",
    "TSTP": "quiet",
    "TTIN": "dump stacks",
    "USR1": "dump stacks",
}


def install(loop: asyncio.AbstractEventLoop, handler: Callable[[str], None]) -> None:
    """Route every signal in the table to ``handler(name)`` on the loop."""
    for name in SIGNAL_TABLE:
        signum = getattr(signal, f"SIG{name}", None)
        if signum is not None:
            loop.add_signal_handler(signum, handler, name)


def dump_stacks() -> None:
    """Log the stack of every thread and every asyncio task."""
    lines = ["thread and task stacks:"]
    for tid, frame in sys._current_frames().items():
        lines.append(f"--- thread {tid}")
        lines.extend(line.rstrip() for line in traceback.format_stack(frame))
    try:
        for task in asyncio.all_tasks():
            lines.append(f"--- task {task.get_name()}")
            for frame in task.get_stack():
                code = frame.f_code
                lines.append(f"  {code.co_filename}:{frame.f_lineno} {code.co_name}")
    except RuntimeError:
        pass
    log.warning("\n".join(lines))
