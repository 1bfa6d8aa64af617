"""The admission gate: between fetching a job and running it, the worker asks whether it may run.

Only job types with a flow policy (declared, or set at run time) go through the gate; the others
pay nothing. For the rest, one ``admit.lua`` call checks the breaker, the concurrency limits and
the rate limits together and either takes a slot from each, or refuses with a wait:

* a short wait (at most ``HOLD_MAX_S``) is spent holding the job, still in flight under this
  worker's lease, then it asks again; at most one job per limit key and worker holds at a time
  and each job holds for at most ``HOLD_BUDGET_S`` in total, so a limited type cannot fill a
  worker's slots;
* a longer wait defers the job: the same script moves it back to the schedule with the reason and
  the time it will be tried again. It is not failed and its retry count does not change.

After the job ran, :meth:`Gate.settle` gives back its concurrency slots and records the outcome in
its breaker. If Redis is unreachable the gate keeps asking (fail closed: nothing runs unchecked).

Jobs of a type declared with ``executor="http"`` also pass the breaker of their sidecar when the
worker's http executor shares one (``sidecar.py``): it is one more breaker check in the same
call, and the call's outcome, as the executor classified it, is recorded after the job.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis

from ..errors import BrokerError, Cancelled
from ..job import Job, loads
from .breaker import Breaker
from .keytemplate import KeyTemplate
from .policy import FlowPolicy
from .sidecar import SidecarGuard, guard_for

if TYPE_CHECKING:
    from ..app import App, JobSpec
    from ..broker import AsyncBroker
    from ..executors import Outcome

log = logging.getLogger("conveyor.flow")
EMPTY_POLICY = FlowPolicy()
HOLD_MAX_S = 0.5
HOLD_BUDGET_S = 2.0
BROKER_RETRY_PAUSE_S = 0.5
SETTLE_ATTEMPTS = 5


@dataclass
class Ticket:
    """What an admitted job holds: concurrency slots and maybe a breaker probe."""

    holder: str
    concurrency_keys: list[str] = field(default_factory=list)
    breaker: Breaker | None = None
    breaker_name: str = ""
    breaker_key: str = ""
    probe: bool = False
    jid: str = ""
    sidecar: SidecarGuard | None = None
    sidecar_key: str = ""
    recorded: set[str] = field(default_factory=set)  # breakers settled (a retry skips them)


@dataclass
class _Plan:
    checks: list[Any]
    waits_on: set[str]
    ticket: Ticket


def rate_key_suffix(limit: Any) -> str:
    """Part of a rate limit's Redis key: limits of another shape never share state."""
    period_ms = max(1, round(limit.period_s * 1000))
    if limit.algorithm == "window":
        return f"|{period_ms}ms"
    return f"|bucket:{limit.limit}/{period_ms}ms/{limit.burst or limit.limit}"


class Gate:
    """Admission control for one worker (``wid``) over its async broker."""

    def __init__(self, broker: AsyncBroker, app: App, wid: str) -> None:
        self.broker = broker
        self.app = app
        self.wid = wid
        self.declared = {name: FlowPolicy.from_options(spec.options)
                         for name, spec in app.registry.items()}
        self._effective = {n: p for n, p in self.declared.items() if not p.empty}
        self._waiting: set[str] = set()
        self.deferred = 0
        self.held = 0

    # --- policies --------------------------------------------------------------------------
    def policy(self, spec: JobSpec) -> FlowPolicy | None:
        """The policy in force for a job type, or None when it has none (a job type on a
        sidecar with a shared breaker always has one, maybe empty). Once per job started: the
        spec in hand spares a second registry lookup for the common case."""
        policy = self._effective.get(spec.name)
        if (policy is None and spec.executor_kind == "http"
                and guard_for(self.app.functions, "http") is not None):
            return EMPTY_POLICY
        return policy

    def _sidecar(self, name: str) -> SidecarGuard | None:
        spec = self.app.registry.get(name)
        if spec is None or spec.executor_kind != "http":
            return None
        return guard_for(self.app.functions, "http")

    def set_runtime(self, runtime: dict[str, dict[str, Any]]) -> None:
        effective = {}
        for name in set(self.declared) | set(runtime):
            policy = self.declared.get(name, FlowPolicy())
            if name in runtime:
                try:
                    policy = policy.override(runtime[name])
                except Exception as exc:  # a bad override must not stop the worker
                    log.warning("ignoring the run-time flow policy of %s: %s", name, exc)
            if not policy.empty:
                effective[name] = policy
        self._effective = effective

    async def start(self) -> None:
        """Publish the declared policies (for the admin views) and load the run-time ones."""
        declared = {n: p.to_json() for n, p in self.declared.items() if not p.empty}
        if declared:
            from ..job import dumps

            await self.broker.redis.hset(self.broker.keys.flow_declared,
                                         mapping={n: dumps(j) for n, j in declared.items()})
        await self.refresh()

    async def refresh(self) -> None:
        raw = await self.broker.redis.hgetall(self.broker.keys.flow_policies)
        runtime = {}
        for name, value in raw.items():
            try:
                runtime[name.decode()] = loads(value)
            except ValueError:
                log.warning("ignoring a run-time flow policy that is not JSON: %r", name)
        self.set_runtime(runtime)

    # --- admission -------------------------------------------------------------------------
    def _plan(self, job: Job, spec: JobSpec, policy: FlowPolicy, args: Sequence[Any],
              kwargs: Mapping[str, Any]) -> _Plan:
        k = self.broker.keys
        name = spec.name  # an ActiveJob envelope's is its job_class, not the wrapper's

        def logical(template: str | None) -> str:
            if template is None:
                return name
            return KeyTemplate(template).render(name, job.queue, args, kwargs, spec.fn)

        ticket = Ticket(f"{self.wid}|{job.token}", jid=job.jid)
        checks: list[Any] = []
        waits_on: set[str] = set()
        if policy.breaker is not None:
            breaker = policy.breaker.name or name
            ticket.breaker, ticket.breaker_name = policy.breaker, breaker
            ticket.breaker_key = k.breaker(breaker)
            checks += policy.breaker.lua_check(ticket.breaker_key, f"breaker {breaker}")
        guard = self._sidecar(name)
        if guard is not None:
            ticket.sidecar, ticket.sidecar_key = guard, k.breaker(guard.name)
            checks += guard.policy.lua_check(ticket.sidecar_key, f"breaker {guard.name}")
        for c in policy.concurrency_limits:
            key = logical(c.key)
            ticket.concurrency_keys.append(k.concurrency(key))
            waits_on.add(k.concurrency(key))
            checks += c.lua_check(k.concurrency(key), f"concurrency limit {key} ({c.limit})")
        for r in policy.rate_limits:
            key = logical(r.key)
            redis_key = k.rate(key + rate_key_suffix(r))
            waits_on.add(redis_key)
            checks += r.lua_check(redis_key, f"rate limit {key} ({r.describe()})")
        return _Plan(checks, waits_on, ticket)

    async def admit(self, job: Job, spec: JobSpec, policy: FlowPolicy,
                    stopping: Callable[[], bool], args: Sequence[Any] | None = None,
                    kwargs: Mapping[str, Any] | None = None) -> Ticket | None:
        """A ticket when the job may run now; None when it was deferred (or must be left in
        flight because the worker is stopping). Key templates read ``args``/``kwargs`` (the
        decoded call; the payload's by default). Raises KeyTemplateError for a bad key."""
        plan = self._plan(job, spec, policy, job.args if args is None else args,
                          job.kwargs if kwargs is None else kwargs)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HOLD_BUDGET_S
        k, s = self.broker.keys, self.broker.settings
        keys = [k.leases, k.inflight(self.wid), k.schedule]
        while not stopping():
            # the right to hold is taken before asking, so concurrent jobs cannot all hold
            may_hold = loop.time() < deadline and not (plan.waits_on & self._waiting)
            if may_hold:
                self._waiting |= plan.waits_on
            try:
                args = [plan.ticket.holder, 0, job.token, job.jid, k.status_prefix,
                        s.status_ttl_s, round(HOLD_MAX_S * 1000) if may_hold else 0,
                        random.random(), len(plan.checks) // 7, *plan.checks]
                try:
                    reply = await self.broker.script("admit", keys, args)
                except BrokerError as exc:
                    log.warning("flow admission failed (asking again): %s", exc)
                    await asyncio.sleep(BROKER_RETRY_PAUSE_S)
                    continue
                code = int(reply[0])
                if code == 1:
                    plan.ticket.probe = bool(int(reply[1]))
                    if plan.ticket.sidecar is not None:
                        plan.ticket.sidecar.admitted(job.jid)
                    return plan.ticket
                if code == -2:
                    return None
                wait_s, reason = int(reply[1]) / 1000, _text(reply[2])
                if code == -1:
                    self.deferred += 1
                    log.debug("deferred %s %s by %.3fs: %s", job.name, job.jid, wait_s, reason)
                    return None
                self.held += 1
                await asyncio.sleep(wait_s)
            finally:
                if may_hold:
                    self._waiting -= plan.waits_on
        return None

    async def settle(self, ticket: Ticket, outcome: Outcome) -> None:
        """Give back the job's concurrency slots and record its outcome in its breaker."""
        for attempt in range(SETTLE_ATTEMPTS):
            try:
                await self._settle_once(ticket, outcome)
                return
            except BrokerError as exc:
                log.warning("releasing flow slots failed (attempt %d): %s", attempt + 1, exc)
                await asyncio.sleep(BROKER_RETRY_PAUSE_S)
        log.error("could not release the flow slots of %s; they free when this worker stops",
                  ticket.holder)
        if ticket.sidecar is not None:
            ticket.sidecar.settle(ticket.jid)

    async def _settle_once(self, ticket: Ticket, outcome: Outcome) -> None:
        if ticket.concurrency_keys:
            pipe = self.broker.redis.pipeline(transaction=False)
            for key in ticket.concurrency_keys:
                pipe.zrem(key, ticket.holder)
            try:
                await pipe.execute()
            except redis.ConnectionError as exc:
                raise BrokerError(str(exc)) from exc
        if ticket.breaker is not None:
            if outcome.ok:
                result = "success"
            elif isinstance(outcome.error, Cancelled):
                result = "neutral"
            else:
                result = ("failure" if ticket.breaker.counts_as_failure(outcome.error)
                          else "success")
            await self._record(ticket, ticket.breaker, ticket.breaker_name,
                               ticket.breaker_key, result)
        if ticket.sidecar is not None:
            # peeked, not popped, until it is recorded: a retried settle records the same
            result = ticket.sidecar.peek(ticket.jid)
            await self._record(ticket, ticket.sidecar.policy, ticket.sidecar.name,
                               ticket.sidecar_key, result)
            ticket.sidecar.settle(ticket.jid)

    async def _record(self, ticket: Ticket, policy: Breaker, name: str, key: str,
                      result: str) -> None:
        if key in ticket.recorded:
            return
        probe = ticket.probe
        if probe and ticket.breaker is not None and ticket.sidecar is not None:
            # admit.lua says only that some breaker took a probe slot; ask this one
            try:
                found = await self.broker.redis.zscore(key + ":probes", ticket.holder)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                raise BrokerError(str(exc)) from exc
            probe = found is not None
        args = policy.record_args(name, result, probe, ticket.holder if probe else "")
        await self.broker.script("breaker_record", [key, self.broker.keys.breakers], args)
        ticket.recorded.add(key)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
