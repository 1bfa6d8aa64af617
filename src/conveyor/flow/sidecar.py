"""Circuit breakers of HTTP sidecars, shared in Redis by every worker that calls the sidecar.

The ``http`` executor names its sidecar's breaker ``sidecar:<name or url>`` and, when it
starts, publishes a :class:`SidecarGuard` here under the function table it serves (in a worker,
the app's ``functions``). The worker's admission gate (``gate.py``) looks the guard up for every
job type declared with ``executor="http"`` and checks that breaker in the same ``admit.lua``
call as the job type's own limits: while it is open the job is **deferred** to the time a probe
may go through (``deferred_reason: breaker sidecar:... is open``), never failed, retried or
dead-lettered for it; half-open, up to ``half_open_probes`` calls go through as probes across
all workers.

Only the executor knows whether a call failed because of the sidecar (unreachable, dropped,
HTTP 5xx, not the protocol) or because of the job (its own exception: the sidecar worked), so
it notes each guarded call's class on the guard (:meth:`SidecarGuard.note`) and the gate
records it in Redis after the job (``breaker_record.lua``), freeing the probe slot.

Without a gate in front (a pipeline, a test calling the executor directly, no Redis at all, or
a job sent to the http executor only by ``--executor QUEUE=http``), :meth:`SidecarGuard.covers`
is false and the executor keeps its local breaker (``executors/_breaker.py``): calls fail at
once with ``CircuitOpen`` while it is open. The registry is per process and keyed by the
function table, so two apps in one process never see each other's sidecars; two http executors
with *different* sidecars on the same table are ambiguous, and then neither is guarded here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from .breaker import Breaker

log = logging.getLogger("conveyor.flow")
OUTCOMES = ("success", "failure", "neutral")
SIDECAR_PREFIX = "sidecar:"


def breaker_name(name: str) -> str:
    """The shared breaker's name for a sidecar called ``name`` (its URL by default)."""
    return name if name.startswith(SIDECAR_PREFIX) else SIDECAR_PREFIX + name


class SidecarGuard:
    """What a worker's gate and its http executor share about one sidecar's breaker."""

    def __init__(self, name: str, policy: Breaker) -> None:
        self.name = breaker_name(name)
        self.policy = policy
        self._calls: dict[str, str] = {}  # jid -> outcome noted by the executor

    def admitted(self, jid: str) -> None:
        """The gate let job ``jid`` through this breaker (called before it runs)."""
        self._calls[jid] = "neutral"

    def covers(self, jid: str) -> bool:
        """Did the gate admit ``jid`` through the shared breaker? (Else: the local one.)"""
        return jid in self._calls

    def note(self, jid: str, outcome: str) -> None:
        """The executor's verdict on the call for ``jid``: success, failure or neutral."""
        if outcome not in OUTCOMES:
            raise ValueError(f"a sidecar call is one of {', '.join(OUTCOMES)}; got {outcome!r}")
        if jid in self._calls:
            self._calls[jid] = outcome

    def peek(self, jid: str) -> str:
        """The outcome noted for ``jid`` so far (neutral when no call was made)."""
        return self._calls.get(jid, "neutral")

    def settle(self, jid: str) -> str:
        """The outcome to record for ``jid`` (neutral when no call was made), forgetting it."""
        return self._calls.pop(jid, "neutral")


_registry: dict[tuple[int, str], tuple[Mapping[str, Any], dict[str, list[Any]]]] = {}


def register(functions: Mapping[str, Any], kind: str, guard: SidecarGuard) -> SidecarGuard:
    """Publish ``guard`` for the executor ``kind`` serving ``functions``; returns the guard to
    use (an equal one already registered by another executor of the same sidecar, shared)."""
    owner = (id(functions), kind)
    _, by_name = _registry.setdefault(owner, (functions, {}))  # holding functions pins its id
    entry = by_name.setdefault(guard.name, [guard, 0])
    entry[1] += 1
    if len(by_name) > 1:
        log.warning("several http executors with different sidecars (%s) serve the same jobs "
                    "in this process; their jobs use local breakers", ", ".join(sorted(by_name)))
    shared: SidecarGuard = entry[0]
    return shared


def unregister(functions: Mapping[str, Any], kind: str, guard: SidecarGuard) -> None:
    owner = (id(functions), kind)
    found = _registry.get(owner)
    if found is None or guard.name not in found[1]:
        return
    entry = found[1][guard.name]
    entry[1] -= 1
    if entry[1] <= 0:
        del found[1][guard.name]
    if not found[1]:
        del _registry[owner]


def guard_for(functions: Mapping[str, Any], kind: str) -> SidecarGuard | None:
    """The one guard of executor ``kind`` serving ``functions``, or None (none, or ambiguous)."""
    found = _registry.get((id(functions), kind))
    if found is None or len(found[1]) != 1:
        return None
    (entry,) = found[1].values()
    guard: SidecarGuard = entry[0]
    return guard
