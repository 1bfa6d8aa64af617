"""Mixed fleets: Ruby Sidekiq processes and Conveyor workers on one Redis.

The rules (``docs/sidekiq.md`` explains them with examples):

1. A queue is served by the side that knows its classes. Give Python jobs their own queues
   (``sidekiq_options queue: "py"`` on a Ruby stub class, ``queue_as :py`` in Rails).
2. What a Conveyor worker does with a job whose class it does not know is a setting,
   ``unknown_classes`` (``CONVEYOR_UNKNOWN_CLASSES``):

   * ``dead`` (the default): the job goes to the dead set with the reason
     ("job type 'X' is not registered; registered types: ..."). Right for Python-only queues.
   * ``hand_back``: the job goes back, byte for byte, to the front of its queue, and this worker
     leaves that queue alone for ``HAND_BACK_PAUSE_S`` so a Sidekiq process blocked on it takes
     it. Right for a queue deliberately shared while classes move from Ruby to Python.

3. With ``dead``, a worker refuses to start on a queue that a live Sidekiq process also serves
   (that would dead-set Ruby's jobs), and if a Sidekiq process starts on one of its queues
   later, unknown classes found there are handed back instead of dead-set. A job Ruby could run
   is never destroyed by the Python side.

Sidekiq itself has no such choice: a class it cannot load fails with NameError and goes through
its retries, so Ruby must never listen on a Python-only queue.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from .admin import Inspector
from .broker import SyncBroker
from .errors import ConfigurationError

log = logging.getLogger("conveyor.interop")

UNKNOWN_DEAD = "dead"
UNKNOWN_HAND_BACK = "hand_back"
UNKNOWN_CLASS_POLICIES = (UNKNOWN_DEAD, UNKNOWN_HAND_BACK)
HAND_BACK_PAUSE_S = 1.0  # how long a worker leaves a queue alone after handing a job back
CONVEYOR_LABEL = "conveyor"  # in ``info.labels`` of every Conveyor process


def check_policy(value: str) -> str:
    """Validate an ``unknown_classes`` setting and return it."""
    if value not in UNKNOWN_CLASS_POLICIES:
        known = ", ".join(UNKNOWN_CLASS_POLICIES)
        raise ConfigurationError(f"unknown_classes must be one of {known}; got {value!r}")
    return value


def sidekiq_servers(broker: SyncBroker, queues: Iterable[str]) -> dict[str, list[str]]:
    """Queue -> identities of live processes that serve it and are not Conveyor (Sidekiq)."""
    wanted = set(queues)
    found: dict[str, list[str]] = {}
    for proc in Inspector(broker).processes():
        if CONVEYOR_LABEL in proc.labels:
            continue
        for queue in wanted.intersection(proc.queues):
            found.setdefault(queue, []).append(proc.identity)
    return found


class UnknownClassPolicy:
    """Decides, per queue, whether a job of an unknown class is dead-set or handed back, and
    remembers which queues this worker leaves alone after a hand back."""

    def __init__(self, mode: str = UNKNOWN_DEAD, pause_s: float = HAND_BACK_PAUSE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.mode = check_policy(mode)
        self.pause_s = pause_s
        self.clock = clock
        self._held_until: dict[str, float] = {}
        self.handed_back = 0

    def check_start(self, broker: SyncBroker, queues: Iterable[str]) -> None:
        """With ``dead``, refuse to serve a queue a live Sidekiq process also serves."""
        if self.mode != UNKNOWN_DEAD:
            return
        shared = sidekiq_servers(broker, queues)
        if shared:
            listing = "; ".join(f"{q} (Sidekiq {', '.join(ids)})"
                                for q, ids in sorted(shared.items()))
            raise ConfigurationError(
                f"queues shared with Sidekiq processes: {listing}. With unknown_classes=dead this "
                "worker would dead-set the Ruby jobs it cannot run. Give Python jobs their own "
                "queues, or set unknown_classes=hand_back (CONVEYOR_UNKNOWN_CLASSES) to share")

    def should_hand_back(self, broker: SyncBroker, queue: str) -> bool:
        """True to hand the job back; False to dead-set it (no Sidekiq process could run it)."""
        if self.mode == UNKNOWN_HAND_BACK:
            self.handed_back += 1
            return True
        servers = sidekiq_servers(broker, [queue]).get(queue)
        if servers:
            log.error("queue %s is served by Sidekiq %s too; handing back a job this worker "
                      "cannot run instead of dead-setting it", queue, ", ".join(servers))
            self.handed_back += 1
            return True
        return False

    def hold(self, queue: str) -> None:
        """Leave ``queue`` alone for ``pause_s``: a job from it is being handed back. (Set before
        the decision so that no waiter of this worker blocks on the queue and takes it again.)"""
        self._held_until[queue] = self.clock() + self.pause_s

    def release(self, queue: str) -> None:
        """The job was dead-set after all: serve ``queue`` again at once."""
        self._held_until.pop(queue, None)

    def held(self, queue: str) -> bool:
        until = self._held_until.get(queue)
        if until is None:
            return False
        if self.clock() >= until:
            del self._held_until[queue]
            return False
        return True

    def available(self, queues: list[str]) -> list[str]:
        """``queues`` without the ones held after a hand back (in the same order)."""
        if not self._held_until:
            return queues
        return [q for q in queues if not self.held(q)]
