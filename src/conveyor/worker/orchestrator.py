"""The worker's orchestrator: fetches as many jobs as it has free slots and runs them.

One module past 600 lines on purpose: fetch, execute, ack and failure handling share the slot
accounting and the fencing tokens of one loop, and splitting them would pass that state around
(the background duties already live in their own files: heartbeat, recoverer, scheduler).

One asyncio loop owns every Redis call about jobs. Fetching takes up to ``free slots`` jobs (at
most ``FETCH_BATCH_MAX``) in one ``fetch.lua`` round trip, straight into this worker's in-flight
record under its lease; when the queues are empty the worker blocks on Redis (``BLMOVE`` into a
claim list, one waiter per queue) instead of polling. Job code runs in an executor (asyncio or
threads here; more kinds in ``conveyor.executors``). Successes are acknowledged in batches;
failures are rewritten with Sidekiq's error fields and sent to ``retry`` or ``dead`` by
``fail.lua``. Every ack and failure carries the fetch's fencing token, so a worker whose jobs
were recovered cannot corrupt them.

Start order (and the reason): the executors that fork (process, fork) first, before this process
has any thread (a fork copies only the forking thread: see docs/executors.md, "The zygote");
then register the lease (so fetched jobs are always covered), then the heartbeat thread (lease
renewal must run before any job can block the loop), then the other executors (the asyncio
one starts its watchdog thread), duties and finally the fetch loop. Stop order is the reverse:
stop fetching, let running jobs finish within the grace period, flush acks, hand back what is
left, then stop the heartbeat and unregister.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from ..activejob import WRAPPER_CLASSES, Call, job_type, resolve
from ..app import App, JobSpec
from ..broker import AsyncBroker, Failure, Fetched, SyncBroker
from ..broker.checks import check_server
from ..context import JobContext
from ..deadletter import dead_entry
from ..errors import BrokerError, Cancelled, MalformedJob, Retry, UnknownJobType, WorkerLost
from ..executors import Executor, Outcome, Task, create_executor
from ..flow.keytemplate import KeyTemplateError
from ..flow.policy import FlowPolicy
from ..interop import UnknownClassPolicy
from ..job import Job, dumps, now_s, parse_job
from ..retry import decide, scrub_message
from ..settings import DEFAULT_CONCURRENCY, MAX_RESULT_BYTES
from .duty import Duty
from .heartbeat import BeatCallbacks, Counters, Heartbeat
from .observe import JobObserver, Observers
from .recoverer import Recoverer
from .scheduler import Scheduler
from .summary import RunSummary

log = logging.getLogger("conveyor.worker")
BROKER_RETRY_PAUSE_S = 0.5
# Fetching and acknowledging at high concurrency (issue 3: 10,000 jobs in flight). A fetch takes
# at most FETCH_BATCH_MAX jobs, so one fetch.lua call holds Redis, and starting its jobs holds
# the loop, for milliseconds rather than a large fraction of a second; the next fetch runs in
# Redis while this process starts the jobs of the last one. When only a few of many slots are
# free, the loop waits up to REFILL_WAIT_S for 1/REFILL_FRACTION of them before fetching, so
# that one round trip refills many slots instead of one or two (a worker with fewer than
# REFILL_FRACTION slots never waits). An ack.lua call carries at most ACK_BATCH_MAX jobs.
FETCH_BATCH_MAX = 1000
REFILL_FRACTION = 20
REFILL_WAIT_S = 0.005
ACK_BATCH_MAX = 1000
FORKING_KINDS = ("process", "fork")  # executors whose zygote must be forked before any thread


@dataclass(frozen=True)
class QueueSpec:
    name: str
    weight: int = 1


def parse_queue_option(value: str) -> QueueSpec:
    """``name`` or ``name,weight`` as on Sidekiq's command line."""
    name, _, weight = value.partition(",")
    name = name.strip()
    if not name:
        raise ValueError(f"--queue {value!r}: the queue name is empty")
    try:
        w = int(weight) if weight else 1
    except ValueError:
        raise ValueError(f"--queue {value!r}: the weight must be an integer") from None
    if w < 1:
        raise ValueError(f"--queue {value!r}: the weight must be at least 1")
    return QueueSpec(name, w)


def make_identity() -> str:
    """Sidekiq's process identity: ``hostname:pid:12 hex``."""
    host = os.environ.get("DYNO") or socket.gethostname()
    return f"{host}:{os.getpid()}:{os.urandom(6).hex()}"


class Worker:
    """Runs the jobs of ``app`` from ``queues`` with ``concurrency`` slots."""

    def __init__(self, app: App, queues: Sequence[QueueSpec] | None = None, *,
                 concurrency: int = DEFAULT_CONCURRENCY, strict: bool = False,
                 redis_url: str | None = None, executor_options: dict[str, Any] | None = None,
                 run_scheduler: bool = True, tag: str = "",
                 queue_executors: dict[str, str] | None = None,
                 observers: Sequence[JobObserver] = ()) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.app = app
        self.settings = app.settings
        self.queues = list(queues) if queues else [
            QueueSpec(q, w) for q, w in app.queue_weights().items()]
        self.queue_names = list(dict.fromkeys(q.name for q in self.queues))
        self.concurrency = concurrency
        self.strict = strict
        self.redis_url = redis_url
        self.executor_options = executor_options or {}
        self.queue_executors = dict(queue_executors or {})  # queue -> executor kind override
        self.run_scheduler = run_scheduler
        self.identity = make_identity()
        self.unknown = UnknownClassPolicy(self.settings.unknown_classes)
        self.tag = tag
        self.counters = Counters()
        self.running: dict[str, tuple[Job, asyncio.Task[None]]] = {}  # token -> job
        self.contexts: dict[str, JobContext] = {}
        self.executors: dict[str, Executor] = {}
        self.quiet = False
        self.started_at = now_s()
        self.processed = 0
        self.failed = 0
        self._stop = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._idle = asyncio.Event()
        self._work = asyncio.Event()
        self._acks: list[tuple[str, str, bytes]] = []
        self._ack_task: asyncio.Task[None] | None = None
        self._fenced = False
        self._fed = False  # the last fetch found jobs (a refill may wait for more free slots)
        self._reconcile_needed = False
        self._flushing: set[str] = set()  # tokens of the ack batch being written
        self._settling: set[str] = set()  # tokens being buried or handed back
        self._background: set[asyncio.Task[Any]] = set()
        # the recent-run summary the heartbeat publishes for the facade (conveyor.latency)
        self.summary = RunSummary()
        self.observers = Observers([*observers, self.summary], self)  # + metrics, tracing, logs

    # --- queue order ---------------------------------------------------------------------------
    def queue_order(self) -> list[str]:
        """Strict: as declared. Weighted: a weighted shuffle on every fetch, like Sidekiq."""
        if self.strict or len(self.queue_names) == 1:
            return self.unknown.available(self.queue_names)
        expanded = [q.name for q in self.queues for _ in range(q.weight)]
        random.shuffle(expanded)
        return self.unknown.available(list(dict.fromkeys(expanded)))

    # --- lifecycle -----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set (or :meth:`request_stop` is called), then shut down."""
        self.loop = asyncio.get_running_loop()
        # Executors that fork (process, fork) start first, before this method makes any thread:
        # their zygote is forked from this process, and a fork copies only the forking thread.
        await self._start_executors(only=FORKING_KINDS)
        try:
            await self._connect_and_register()
        except BaseException:
            for ex in self.executors.values():
                await ex.stop(0)
            raise
        self.heartbeat = Heartbeat(self.sync_broker, self.identity, self.info(), self.counters,
                                   self._beat_callbacks(), self.settings.heartbeat_interval_s)
        self.heartbeat.start()
        await self._start_executors(skip=FORKING_KINDS)
        duties: list[Duty] = [Recoverer(self.broker, self.settings.recoverer_interval_s)]
        if self.run_scheduler:
            duties.append(Scheduler(self.broker, self.settings.scheduler_interval_s))
        duties += await self._start_flow()
        self.duties = duties
        tasks = [asyncio.create_task(d.run(), name=d.name) for d in duties]
        waiters = [asyncio.create_task(self._waiter(q)) for q in self.queue_names]
        stopper = asyncio.create_task(stop.wait()) if stop else None
        log.info("worker %s started: queues %s, concurrency %d", self.identity,
                 ",".join(self.queue_names), self.concurrency)
        try:
            if stopper is not None:
                stopper.add_done_callback(lambda _: self.request_stop())
            await self._fetch_loop()
        finally:
            await self._shutdown(duties, tasks, waiters)
            if stopper is not None:
                stopper.cancel()

    async def _start_flow(self) -> list[Duty]:
        """Flow control (conveyor.flow): the admission gate with its policy refresher, and the
        cron duty beside the scheduler. (Imported here: the flow duties import worker.duty.)"""
        from ..flow.cronduty import duty_for
        from ..flow.gate import Gate
        from ..flow.refresher import PolicyRefresher

        self.gate = Gate(self.broker, self.app, self.identity)
        await self.gate.start()
        duties: list[Duty] = [PolicyRefresher(self.gate)]
        if self.run_scheduler:
            duties.append(duty_for(self.app, self.broker, self.settings.scheduler_interval_s))
        return duties

    def request_stop(self) -> None:
        """Stop fetching and shut down gracefully (what TERM and INT do)."""
        self._stop.set()
        self._slot_free.set()
        self._work.set()

    def request_quiet(self) -> None:
        """Stop fetching new jobs but keep running (TSTP, or Quiet in Sidekiq's Web UI)."""
        self.quiet = True

    def info(self) -> dict[str, Any]:
        """The ``info`` Sidekiq's Web UI shows for this process."""
        return {
            "hostname": self.identity.split(":")[0],
            "started_at": self.started_at,
            "pid": os.getpid(),
            "tag": self.tag,
            "concurrency": self.concurrency,
            "queues": self.queue_names,
            "weights": [{q.name: (0 if self.strict else q.weight) for q in self.queues}],
            "labels": ["conveyor"],
            "identity": self.identity,
            "version": "conveyor",
            "executors": sorted({s.executor_kind for s in self.app.registry.values()}
                                | set(self.queue_executors.values())),
        }

    async def _connect_and_register(self) -> None:
        from ..embedded import resolve_redis_url

        url = self.redis_url
        if url is None:
            url = await asyncio.to_thread(resolve_redis_url, self.settings)
        self.broker = AsyncBroker(url, self.settings, max_connections=len(self.queue_names) + 16)
        self.sync_broker = SyncBroker(url, self.settings)
        try:
            await asyncio.to_thread(check_server, self.sync_broker.redis,
                                    self.settings.allow_eviction)
        except BaseException:
            await self.broker.close()
            self.sync_broker.close()
            raise
        await asyncio.to_thread(self.unknown.check_start, self.sync_broker, self.queue_names)
        await asyncio.to_thread(self.sync_broker.register, self.identity, dumps(self.info()))

    async def _start_executors(self, only: Sequence[str] = (),
                               skip: Sequence[str] = ()) -> None:
        kinds = ({s.executor_kind for s in self.app.registry.values()} | {"asyncio"}
                 | set(self.queue_executors.values()))
        for kind in sorted(kinds):
            if (only and kind not in only) or kind in skip or kind in self.executors:
                continue
            options = self.executor_options.get(kind, {})
            ex = create_executor(kind, self.app.functions, self.concurrency, **options)
            await ex.start()
            self.executors[kind] = ex

    async def _executor_for(self, kind: str) -> Executor:
        """The executor of ``kind``, started on first use for job types registered late."""
        ex = self.executors.get(kind)
        if ex is None:
            ex = create_executor(kind, self.app.functions, self.concurrency,
                                 **self.executor_options.get(kind, {}))
            self.executors[kind] = ex
            await ex.start()
        return ex

    async def _shutdown(self, duties: list[Any], tasks: list[asyncio.Task[Any]],
                        waiters: list[asyncio.Task[Any]]) -> None:
        grace = self.settings.shutdown_grace_s
        running = [t for _, t in self.running.values()]
        if running:
            log.info("waiting up to %.1fs for %d running job(s)", grace, len(running))
            await asyncio.wait(running, timeout=grace)
        for d in duties:
            d.stop()
        for w in waiters:
            w.cancel()
        await asyncio.gather(*tasks, *waiters, return_exceptions=True)
        await self._flush_acks()
        handed_back = await asyncio.to_thread(self.sync_broker.release, self.identity)
        if handed_back:
            log.info("handed %d unfinished job(s) back to their queues", handed_back)
        for ex in self.executors.values():
            await ex.stop(0)
        for _, t in list(self.running.values()):
            t.cancel()
        self.heartbeat.stop()
        await asyncio.to_thread(self.heartbeat.unregister)
        await self.broker.close()
        self.sync_broker.close()

    # --- fetching ------------------------------------------------------------------------------
    async def _fetch_loop(self) -> None:
        refill = max(1, self.concurrency // REFILL_FRACTION)
        ahead: asyncio.Task[list[Fetched] | None] | None = None  # a fetch sent before starting
        try:
            while not self._stop.is_set():
                if ahead is None:
                    free = self.concurrency - len(self.running)
                    if free <= 0 or self.quiet:
                        self._slot_free.clear()
                        await self._wait(self._slot_free, self.settings.idle_block_s)
                        continue
                    if free < refill and self._fed:
                        await asyncio.sleep(REFILL_WAIT_S)  # let more slots free up (see above)
                        free = self.concurrency - len(self.running)
                    fetch: Awaitable[list[Fetched] | None] = self._fetch(free)
                else:
                    fetch, ahead = ahead, None
                try:
                    fetched = await fetch
                except BrokerError as exc:
                    # the reply may have been lost after the script ran: jobs may sit in our
                    # in-flight hash that this process never saw; reconcile before the next one
                    self._reconcile_needed = True
                    log.warning("fetch failed (retrying): %s", exc)
                    await self._wait(self._stop, BROKER_RETRY_PAUSE_S)
                    continue
                if fetched is None:
                    await self._reregister()
                    continue
                self._fed = bool(fetched)
                if fetched:
                    if self._stop.is_set():
                        break  # not started: shutdown hands them back with the in-flight record
                    # Send the next fetch before starting these jobs, so that Redis runs it
                    # while this loop starts them (a burst of 10,000 jobs: fetching 1,000 takes
                    # Redis about as long as starting them takes this process).
                    free = self.concurrency - len(self.running) - len(fetched)
                    if free >= refill and not self.quiet and not self._reconcile_needed:
                        ahead = asyncio.create_task(self._fetch(free))
                        # two turns of the loop: one for the task to reach the socket write,
                        # which redis-py (with a socket timeout) runs in a task of its own
                        # (asyncio.wait_for), one for that write; with one turn the fetch left
                        # only after these jobs were started, 4-6 ms later per 1,000 jobs
                        await asyncio.sleep(0)
                        await asyncio.sleep(0)
                    for f in fetched:
                        self._start(f)
                    continue
                self._work.clear()
                self._idle.set()
                await self._wait(self._work, self.settings.idle_block_s)
                self._idle.clear()
        finally:
            if ahead is not None:  # its jobs, if any, are handed back at shutdown
                with contextlib.suppress(BaseException):
                    await ahead

    async def _fetch(self, free: int) -> list[Fetched] | None:
        if self._reconcile_needed:
            await self._reconcile()
        return await self.broker.fetch(self.identity, self.queue_order(),
                                       min(free, FETCH_BATCH_MAX))

    async def _wait(self, event: asyncio.Event, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout_s)

    async def _waiter(self, queue: str) -> None:
        """While the worker is idle, block on ``queue`` and wake the fetch loop when a job comes."""
        while not self._stop.is_set():
            await self._idle.wait()
            if self.unknown.held(queue):  # a job was just handed back: let Sidekiq take it
                await self._wait(self._stop, self.unknown.pause_s)
                continue
            try:
                if await self.broker.redis.sismember(self.broker.keys.paused, queue):
                    await self._wait(self._stop, self.settings.idle_block_s)
                    continue
                if await self.broker.claim(self.identity, queue, self.settings.idle_block_s):
                    self._idle.clear()  # block again only after the fetch loop has taken it
                    self._work.set()
            except (BrokerError, redis.RedisError, OSError) as exc:
                log.warning("waiting on queue %s failed: %s", queue, exc)
                await self._wait(self._stop, BROKER_RETRY_PAUSE_S)

    async def _reconcile(self) -> None:
        """Hand back in-flight entries whose tokens this process does not know (a fetch whose
        reply was lost); acks for them would be refused anyway, so nothing runs twice here."""
        try:
            entries = await self.broker.redis.hgetall(self.broker.keys.inflight(self.identity))
        except (redis.RedisError, OSError) as exc:
            raise BrokerError(f"cannot read this worker's in-flight jobs: {exc}") from exc
        known = (set(self.running) | {t for t, _, _ in self._acks} | self._flushing
                 | self._settling)
        for raw_token, entry in entries.items():
            token = raw_token.decode()
            if token in known:
                continue
            queue = bytes(entry).split(b"\n", 1)[0].decode()
            if await self.broker.hand_back(self.identity, token, queue):
                log.warning("handed back a job of queue %s whose fetch reply was lost", queue)
        self._reconcile_needed = False

    async def _reregister(self) -> None:
        log.warning("worker %s had no lease (presumed dead); registering again", self.identity)
        await asyncio.to_thread(self.sync_broker.register, self.identity, dumps(self.info()))

    # --- running -------------------------------------------------------------------------------
    def _start(self, f: Fetched) -> None:
        try:
            job = parse_job(f.raw, f.queue, f.token)
            data = job.data
            if data["class"] in WRAPPER_CLASSES:
                call = resolve(self.app, job)  # ActiveJob envelopes dispatch on job_class
            else:  # resolve()'s other case, inlined: this runs for every job taken
                spec = self.app.registry.get(data["class"])
                call = None if spec is None else Call(spec, data["args"],
                                                      data.get("kwargs") or {})
        except MalformedJob as exc:
            self._spawn(self._bury(f, "MalformedJob", str(exc)), f.token)
            return
        if call is None:
            self.unknown.hold(f.queue)  # now, before any waiter blocks on the queue again
            self._spawn(self._unknown(f, job_type(job.data)), f.token)
            return
        policy = self.gate.policy(call.spec)  # an ActiveJob's policy is its job_class's
        coro: Coroutine[Any, Any, Any] = (self._execute(job, call) if policy is None
                                          else self._admit_and_execute(job, call, policy))
        self.running[job.token] = (job, self.loop.create_task(coro))

    def _spawn(self, coro: Any, token: str = "") -> None:
        """Run ``coro`` in the background; ``token`` is the in-flight entry it settles."""
        t = asyncio.create_task(coro)
        self._background.add(t)
        t.add_done_callback(self._background.discard)
        if token:
            self._settling.add(token)
            t.add_done_callback(lambda _: self._settling.discard(token))

    async def _bury(self, f: Fetched, error_class: str, message: str) -> None:
        """Send a job that can never run straight to the dead set, with the reason."""
        dead_raw, jid = dead_entry(f.raw, error_class, message, f.queue)
        log.error("dead-lettered a job from queue %s: %s: %s", f.queue, error_class,
                  message[:200])
        failure = Failure(f.token, jid, "dead", dead_raw, 0.0, error_class, scrub_message(message))
        await self._record_failure(failure)
        self.counters.add(1, 1)
        self.observers.dead_lettered(f.queue, error_class)

    async def _unknown(self, f: Fetched, name: str) -> None:
        """No handler for this class: dead set, or back to Sidekiq (see ``interop.py``)."""
        if await asyncio.to_thread(self.unknown.should_hand_back, self.sync_broker, f.queue):
            if await self.broker.hand_back(self.identity, f.token, f.queue):
                log.info("handed a %s job back to queue %s (no handler here)", name, f.queue)
            return
        self.unknown.release(f.queue)
        await self._bury(f, "UnknownJobType", str(UnknownJobType(name, self.app.registry)))

    async def _admit_and_execute(self, job: Job, call: Call, policy: FlowPolicy) -> None:
        """Flow control (conveyor.flow.gate): run the job now, or hold it briefly, or defer it
        to the schedule (not a failure, not a retry); afterwards give back its limit slots.
        (A job type with no policy skips this: ``_start`` runs ``_execute`` directly.)"""
        spec = call.spec
        ticket = None
        try:
            ticket = await self.gate.admit(job, spec, policy, self._stop.is_set, call.args,
                                           call.kwargs)
        except KeyTemplateError as exc:
            await self._fail(job, spec, Outcome.failure(exc))
        if ticket is None:
            self.running.pop(job.token, None)
            self._slot_free.set()
            return
        outcome = await self._execute(job, call)
        await self.gate.settle(ticket, outcome)

    async def _execute(self, job: Job, call: Call) -> Outcome:
        spec = call.spec
        outcome: Outcome | None = None
        result = "completed"
        jid = job.jid
        try:  # everything inside: whatever raises, the slot is freed (issue 9, scenario 8)
            data = job.data
            ctx = JobContext(jid, data["class"], job.queue, job.attempt, data, False,
                             self._report)
            self.contexts[jid] = ctx
            timeout = data.get("timeout") or spec.timeout
            task = Task(spec.name, call.args, call.kwargs, timeout, jid, ctx)
            if self.observers.on_start:
                self.observers.started(job, spec)
            kind = ((self.queue_executors and self.queue_executors.get(job.queue))
                    or spec.executor_kind)
            executor = self.executors.get(kind) or await self._executor_for(kind)
            outcome = await executor.run(task)
            if outcome.ok:
                self._ack(job.token, jid, outcome)
            else:
                result = await self._fail(job, spec, outcome)
            return outcome
        finally:
            self.running.pop(job.token, None)
            self.contexts.pop(jid, None)
            self._slot_free.set()
            if outcome is not None:
                self.observers.finished(job, spec, outcome, result)

    def _ack(self, token: str, jid: str, outcome: Outcome) -> None:
        result = b""
        if outcome.value is not None:
            try:
                result = dumps(outcome.value)
            except Exception as exc:
                result = dumps({"unserializable_result": f"{type(exc).__name__}: {exc}"[:500]})
            if len(result) > MAX_RESULT_BYTES:
                result = dumps({"result_too_large_bytes": len(result)})
        self._acks.append((token, jid, result))
        self.processed += 1
        self.counters.add(1, 0)
        if self._ack_task is None:
            self._ack_task = asyncio.create_task(self._flush_acks_loop())

    async def _flush_acks_loop(self) -> None:
        try:
            await self._flush_acks()
        finally:
            self._ack_task = None

    async def _flush_acks(self) -> None:
        while self._acks:
            batch, self._acks = self._acks[:ACK_BATCH_MAX], self._acks[ACK_BATCH_MAX:]
            self._flushing = {t for t, _, _ in batch}
            try:
                refused = await self.broker.ack(self.identity, batch)
            except BrokerError as exc:
                log.warning("ack failed (retrying): %s", exc)
                self._acks = batch + self._acks
                await asyncio.sleep(BROKER_RETRY_PAUSE_S)
                continue
            finally:
                self._flushing = set()
            if refused:
                log.warning("%d ack(s) refused: those jobs were recovered by another worker",
                            len(refused))

    async def _fail(self, job: Job, spec: JobSpec, outcome: Outcome) -> str:
        """Record a failed run; returns what became of the job (retry, dead, discard,
        cancelled)."""
        self.failed += 1
        self.counters.add(1, 1)
        error = outcome.error
        if isinstance(error, Cancelled):
            failure = Failure(job.token, job.jid, "cancelled", b"", 0.0, "Cancelled",
                              "cancelled while running")
            await self._record_failure(failure)
            return "cancelled"
        if isinstance(error, WorkerLost) and await self._bury_if_lost_too_often(job, outcome):
            return "dead"
        explicit = error.delay if isinstance(error, Retry) else None
        retry_override = spec.retry if job.data.get("retry") is None else None
        decision = decide(job.raw, job.queue, outcome.error_class, outcome.message,
                          outcome.backtrace, retry_override=retry_override,
                          backoff=spec.backoff, explicit_delay=explicit,
                          max_retries=self.settings.max_retries)
        log.info("job %s %s failed (%s: %s) -> %s", job.name, job.jid, outcome.error_class,
                 outcome.message[:200], decision.mode)
        await self._record_failure(Failure(job.token, job.jid, decision.mode, decision.raw,
                                           decision.delay_s, outcome.error_class,
                                           scrub_message(outcome.message)))
        return decision.mode

    async def _bury_if_lost_too_often(self, job: Job, outcome: Outcome) -> bool:
        """An executor child that died counts as a lost worker, like a lease recovery: past
        ``max_recoveries`` losses the job is a poison pill and goes to the dead set at once
        (instead of retrying for weeks and killing a child each time)."""
        losses = await self.broker.count_loss(job.jid)
        if losses <= self.settings.max_recoveries:
            return False
        message = f"worker lost {losses} times; last: {outcome.message}"
        dead_raw, jid = dead_entry(job.raw, "WorkerLost", message, job.queue)
        log.error("job %s %s buried: %s", job.name, job.jid, message[:200])
        await self._record_failure(Failure(job.token, jid or job.jid, "dead", dead_raw, 0.0,
                                           "WorkerLost", scrub_message(message)))
        return True

    async def _record_failure(self, failure: Failure) -> None:
        while True:
            try:
                if not await self.broker.fail(self.identity, failure):
                    log.warning("failure of %s refused: it was recovered by another worker",
                                failure.jid)
                return
            except BrokerError as exc:
                if self._stop.is_set():
                    raise
                log.warning("recording a failure failed (retrying): %s", exc)
                await asyncio.sleep(BROKER_RETRY_PAUSE_S)

    # --- heartbeat hooks (called from the heartbeat thread) ---------------------------------------
    def _report(self, jid: str, fields: dict[str, Any]) -> None:
        self.sync_broker.redis.hset(self.sync_broker.keys.job(jid), mapping=fields)

    def _beat_callbacks(self) -> BeatCallbacks:
        return BeatCallbacks(
            busy=self._busy_snapshot,
            quiet=lambda: self.quiet or self._stop.is_set(),
            on_fenced=lambda: self._from_thread(self._on_fenced),
            on_signal=lambda s: self._from_thread(self.handle_signal, s),
            on_cancelled=lambda jids: self._from_thread(self._cancel_running, jids),
            summary=self.summary.wire,
        )

    def _from_thread(self, fn: Any, *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def _busy_snapshot(self) -> dict[str, tuple[str, bytes, int]]:
        now = int(time.time())
        return {job.jid: (job.queue, job.raw, now - int(time.monotonic() - job.fetched_at))
                for job, _ in list(self.running.values())}

    def _on_fenced(self) -> None:
        self._fenced = True
        self._spawn(self._reregister())

    def _cancel_running(self, jids: list[str]) -> None:
        for jid in jids:
            ctx = self.contexts.get(jid)
            if ctx is None or ctx.cancelled:
                continue
            ctx.cancelled = True
            for ex in self.executors.values():
                if ex.cancel(jid):
                    log.info("cancelled running job %s", jid)
                    break

    def handle_signal(self, name: str) -> None:
        """Signals from the OS or from Sidekiq's Web UI (via the heartbeat)."""
        from .signals import dump_stacks

        if name in ("TERM", "INT"):
            log.info("%s: shutting down gracefully", name)
            self.request_stop()
        elif name == "TSTP":
            log.info("TSTP: quiet (no new jobs)")
            self.request_quiet()
        elif name in ("TTIN", "USR1"):
            dump_stacks()
