"""Single key presses from a terminal, for live views (``q`` quit, ``p`` pause, ``h`` help).

:func:`read_keys` puts the TTY in cbreak mode (keys arrive without Enter, output is unchanged),
calls ``on_key`` from a reader thread for each key, and restores the terminal on exit. The
reader polls with ``select`` so it stops promptly instead of staying blocked on a read and
swallowing the next key typed at the shell. Without a TTY on stdin it does nothing.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import threading
from collections.abc import Callable, Iterator

KEY_POLL_S = 0.1  # how often the reader thread looks at its stop flag


@contextlib.contextmanager
def read_keys(on_key: Callable[[str], None]) -> Iterator[bool]:
    """Deliver key presses to ``on_key`` while inside; yields whether keys are being read."""
    if not sys.stdin.isatty():
        yield False
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    stop = threading.Event()

    def pump() -> None:
        while not stop.is_set():
            ready, _, _ = select.select([fd], [], [], KEY_POLL_S)
            if not ready:
                continue
            data = os.read(fd, 1)
            if not data:
                return
            on_key(data.decode(errors="replace"))

    tty.setcbreak(fd)
    reader = threading.Thread(target=pump, name="conveyor-keys", daemon=True)
    reader.start()
    try:
        yield True
    finally:
        stop.set()
        reader.join(KEY_POLL_S * 5)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
