"""The application object: the job registry and the front door for enqueuing.

``app = conveyor.App()`` holds the registered job types. ``@app.job`` registers a sync or async
function under a name (its ``class`` on the wire) and returns a :class:`JobFunction` that still
calls the function directly and adds ``enqueue``/``enqueue_in``/``enqueue_at`` and their async
twins. Nothing touches Redis until the first enqueue (no I/O at import time).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, Generic, ParamSpec, TypeVar

from .client import Client, EnqueueRequest, JobHandle
from .errors import ConfigurationError, UnknownJobType
from .flow.cron import CronEntry
from .flow.policy import check_options as check_flow_options
from .retry import Backoff
from .settings import PRIORITY_QUEUES, PRIORITY_WEIGHTS, Settings

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class JobSpec:
    """A registered job type and its options."""

    name: str
    fn: Callable[..., Any]
    queue: str = "default"
    retry: bool | int = True
    backoff: Backoff | None = None
    timeout: float | None = None
    executor: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @cached_property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    @cached_property  # asked per job started (the flow gate), and ``fn`` never changes
    def executor_kind(self) -> str:
        """Where it runs when not told: async functions on the loop, sync ones in threads."""
        return self.executor or ("asyncio" if self.is_async else "thread")


class JobFunction(Generic[P, R]):
    """A registered job: call it to run it here and now, or enqueue it to run on a worker."""

    def __init__(self, app: App, spec: JobSpec) -> None:
        self.app = app
        self.spec = spec
        self.__wrapped__ = spec.fn
        self.__name__ = getattr(spec.fn, "__name__", spec.name)
        self.__doc__ = spec.fn.__doc__

    @property
    def name(self) -> str:
        return self.spec.name

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = self.spec.fn(*args, **kwargs)
        return result

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle:
        """Run on a worker as soon as one is free."""
        return self.app.enqueue(self.spec.name, args=args, kwargs=kwargs)

    def enqueue_in(self, seconds: float, *args: P.args, **kwargs: P.kwargs) -> JobHandle:
        """Run on a worker after ``seconds`` (measured on the Redis clock)."""
        return self.app.enqueue(self.spec.name, args=args, kwargs=kwargs, delay=seconds)

    def enqueue_at(self, when: datetime, *args: P.args, **kwargs: P.kwargs) -> JobHandle:
        """Run on a worker at ``when`` (a timezone-aware datetime, or naive local time)."""
        return self.app.enqueue(self.spec.name, args=args, kwargs=kwargs, at=when)

    async def aenqueue(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle:
        return await self.app.aenqueue(self.spec.name, args=args, kwargs=kwargs)

    async def aenqueue_in(self, seconds: float, *args: P.args, **kwargs: P.kwargs) -> JobHandle:
        return await self.app.aenqueue(self.spec.name, args=args, kwargs=kwargs, delay=seconds)

    async def aenqueue_at(self, when: datetime, *args: P.args, **kwargs: P.kwargs) -> JobHandle:
        return await self.app.aenqueue(self.spec.name, args=args, kwargs=kwargs, at=when)

    def request(self, *args: Any, **kwargs: Any) -> EnqueueRequest:
        """An enqueue request for :meth:`App.enqueue_many`."""
        return EnqueueRequest(self.spec.name, args=args, kwargs=kwargs)


class App:
    """A Conveyor application: registered job types plus the settings to reach Redis.

    ``redis_url`` defaults to ``CONVEYOR_REDIS_URL``, and without it to the embedded server in
    the data folder (started on first use). ``inline=True`` runs jobs at enqueue time in the
    calling process, for tests.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        namespace: str | None = None,
        settings: Settings | None = None,
        inline: bool = False,
        priority_queues: Mapping[str, str] | None = None,
    ) -> None:
        base = settings or Settings.from_env()
        overrides: dict[str, Any] = {}
        if redis_url is not None:
            overrides["redis_url"] = redis_url
        if namespace is not None:
            overrides["namespace"] = namespace
        self.settings = base.with_(**overrides) if overrides else base
        self.registry: dict[str, JobSpec] = {}
        self.functions: dict[str, Callable[..., Any]] = {}
        self.priority_queues = dict(priority_queues or PRIORITY_QUEUES)
        self.inline = inline
        self._client: Client | None = None
        self.cron_entries: dict[str, CronEntry] = {}  # periodic jobs (conveyor.flow.cron)

    # --- registration ------------------------------------------------------------------------
    def job(
        self,
        fn: Callable[P, R] | None = None,
        *,
        name: str | None = None,
        queue: str = "default",
        retry: bool | int = True,
        backoff: Backoff | None = None,
        timeout: float | None = None,
        executor: str | None = None,
        **options: Any,
    ) -> Any:
        """Register a job type; usable bare (``@app.job``) or with options.

        Flow options (``conveyor.flow``): ``rate_limit="10/s"`` (or RateLimit objects, or a
        list), ``concurrency_limit=3``, ``breaker=Breaker(...)`` and ``unique=Unique(...)``;
        they are checked here, so a mistake fails at import time rather than in a worker.
        """

        def register(f: Callable[P, R]) -> JobFunction[P, R]:
            spec = JobSpec(
                name=name or f"{f.__module__}.{f.__qualname__}",
                fn=f,
                queue=queue,
                retry=retry,
                backoff=backoff,
                timeout=timeout,
                executor=executor,
                options=options,
            )
            self.register(spec)
            return JobFunction(self, spec)

        return register(fn) if fn is not None else register

    def register(self, spec: JobSpec) -> None:
        check_flow_options(spec.options)
        existing = self.registry.get(spec.name)
        if existing is not None and existing.fn is not spec.fn:
            raise ConfigurationError(
                f"job type {spec.name!r} is already registered to {existing.fn!r}; "
                "give one of them another name="
            )
        self.registry[spec.name] = spec
        self.functions[spec.name] = spec.fn

    def spec(self, name: str) -> JobSpec:
        try:
            return self.registry[name]
        except KeyError:
            raise UnknownJobType(name, self.registry) from None

    def queue_weights(self) -> dict[str, int]:
        """Default queues for a worker: the priority queues (3:2:1) plus every job's queue."""
        weights = {self.priority_queues[p]: PRIORITY_WEIGHTS.get(q, 1)
                   for p, q in PRIORITY_QUEUES.items()}
        for spec in self.registry.values():
            weights.setdefault(spec.queue, 1)
        return weights

    # --- periodic jobs (conveyor.flow.cron; exactly once per slot, see docs/flow-control.md) ---
    def cron(self, expr: str, job: JobFunction[Any, Any] | str, *, name: str | None = None,
             tz: str = "UTC", **options: Any) -> CronEntry:
        """Run ``job`` at every slot of the cron expression ``expr`` in time zone ``tz``.

        Options: ``args``, ``kwargs``, ``queue``, ``catch_up`` ("one", "all", "none") and
        ``grace_s``; ``name`` defaults to "<job type>@<expr>".
        """
        return self._add_cron(job, name, options, cron=expr, tz=tz)

    def every(self, interval: float | timedelta, job: JobFunction[Any, Any] | str, *,
              name: str | None = None, **options: Any) -> CronEntry:
        """Run ``job`` every ``interval`` (seconds or a timedelta), aligned to the epoch."""
        seconds = interval.total_seconds() if isinstance(interval, timedelta) else float(interval)
        return self._add_cron(job, name, options, every_s=seconds)

    def _add_cron(self, job: JobFunction[Any, Any] | str, name: str | None,
                  options: dict[str, Any], **schedule: Any) -> CronEntry:
        job_name = job.name if isinstance(job, JobFunction) else job
        spec = self.registry.get(job_name)
        options.setdefault("queue", spec.queue if spec else "default")
        when = schedule.get("cron") or f"every {schedule.get('every_s'):g}s"
        entry = CronEntry(name=name or f"{job_name}@{when}", job=job_name, **schedule, **options)
        if entry.name in self.cron_entries:
            raise ConfigurationError(f"cron entry {entry.name!r} is declared twice; give one "
                                     "of them another name=")
        self.cron_entries[entry.name] = entry
        return entry

    # --- enqueueing ----------------------------------------------------------------------------
    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self)
        return self._client

    def enqueue(self, name: str, **options: Any) -> JobHandle:
        """Enqueue job type ``name``; options as :class:`~conveyor.client.EnqueueRequest`."""
        return self.client.enqueue(EnqueueRequest(name, **options))

    async def aenqueue(self, name: str, **options: Any) -> JobHandle:
        return await self.client.aenqueue(EnqueueRequest(name, **options))

    def enqueue_many(self, requests: list[EnqueueRequest]) -> list[JobHandle]:
        """Enqueue many jobs in one pipelined round trip."""
        return self.client.enqueue_many(requests)

    async def aenqueue_many(self, requests: list[EnqueueRequest]) -> list[JobHandle]:
        return await self.client.aenqueue_many(requests)

    def handle(self, jid: str) -> JobHandle:
        """A handle on an existing job by its id."""
        return JobHandle(self.client, jid)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Close the connections, including the async pool used by ``aenqueue``."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def __iter__(self) -> Iterator[JobSpec]:
        return iter(self.registry.values())


def load_app(path: str) -> App:
    """Import ``pkg.module:attr`` (the user's own code, named on the command line)."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"--app must look like 'package.module:app', got {path!r}")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"cannot import {module_name!r} for --app {path!r}: {exc}") from exc
    try:
        app = getattr(module, attr)
    except AttributeError:
        raise ConfigurationError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(app, App):
        raise ConfigurationError(f"{path!r} is a {type(app).__name__}, not a conveyor.App")
    return app
