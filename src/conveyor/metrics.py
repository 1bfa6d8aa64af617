"""Prometheus metrics, every name prefixed ``conveyor_`` (the list is in docs/metrics.md).

Two sources, scraped separately:

* The API process (``/metrics``): :class:`AdminCollector` reads the admin facade at scrape time
  (queue depth and latency, set sizes, lifetime counters, workers and their busy slots, the
  recent-run percentiles the workers publish with their heartbeats, Redis health), and
  :class:`ApiMetrics` counts the API's own requests and cut connections.
* Each worker (``conveyor worker --metrics-port``): :class:`WorkerMetrics` observes every job
  it runs (counts by queue, type and outcome; run time and wait histograms; run time and time
  spent waiting inside each executor, which for the HTTP sidecar executor is the bridge
  latency; jobs dead-lettered without running) and reads the worker's in-flight slots,
  capacity, executors (with their health) and recoveries at scrape time. Counts by job type
  exist only here: Redis keeps no per-type counters, so the API cannot export them.

Each owner gets its own registry (no process-global state), so several apps or tests in one
process do not collide. p50/p95/p99 come from the histograms with ``histogram_quantile``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .errors import BrokerError, ConfigurationError
from .latency import enqueued_seconds

RUN_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                 60.0, 300.0, 900.0, 3600.0)
WAIT_BUCKETS_S = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0,
                  1800.0, 3600.0, 21600.0, 86400.0)
API_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
DEFAULT_METRICS_HOST = "127.0.0.1"
RECENT_QUANTILES = (0.5, 0.95, 0.99)


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"conveyor_{name}", doc, labels=labels)


class AdminCollector(Collector):
    """Reads the facade on each scrape; when Redis is down only ``conveyor_redis_up 0``."""

    def __init__(self, inspector: Any) -> None:
        self.inspector = inspector
        self.breakers = BreakerCollector(inspector)  # circuit breakers (flow control)

    def collect(self) -> Iterator[Metric]:
        health = self.inspector.health()
        up = _gauge("redis_up", "1 when Redis answered the last scrape's PING")
        up.add_metric([], 1.0 if health.ok else 0.0)
        yield up
        if not health.ok:
            return
        rtt = _gauge("redis_rtt_seconds", "Round-trip time of a PING from the API process")
        rtt.add_metric([], health.rtt_ms / 1000)
        mem = _gauge("redis_used_memory_bytes", "Memory Redis reports as used")
        mem.add_metric([], float(health.used_memory_bytes))
        yield from (rtt, mem)
        try:
            yield from self._queues()
            yield from self._stats()
            yield from self._workers()
            yield from self.breakers.collect()
        except (redis.RedisError, BrokerError, OSError):
            return

    def _queues(self) -> Iterator[Metric]:
        depth = _gauge("queue_depth", "Jobs waiting in the queue", ["queue"])
        latency = _gauge("queue_latency_seconds", "Age of the oldest waiting job", ["queue"])
        paused = _gauge("queue_paused", "1 when the queue is paused", ["queue"])
        for q in self.inspector.queues():
            depth.add_metric([q.name], q.size)
            latency.add_metric([q.name], q.latency_s)
            paused.add_metric([q.name], 1.0 if q.paused else 0.0)
        yield from (depth, latency, paused)

    def _stats(self) -> Iterator[Metric]:
        s = self.inspector.stats()
        processed = CounterMetricFamily("conveyor_processed_jobs", "Jobs run by all workers "
                                        "(Sidekiq's stat:processed)")
        processed.add_metric([], s.processed)
        failed = CounterMetricFamily("conveyor_failed_jobs", "Job runs that failed (Sidekiq's "
                                     "stat:failed)")
        failed.add_metric([], s.failed)
        sets = _gauge("set_size", "Jobs in the scheduled, retry and dead sets", ["set"])
        for name, size in (("scheduled", s.scheduled), ("retry", s.retries), ("dead", s.dead)):
            sets.add_metric([name], size)
        yield from (processed, failed, sets)

    def _workers(self) -> Iterator[Metric]:
        procs = self.inspector.processes()
        yield from self._recent(procs)
        count = _gauge("workers", "Worker processes with a live heartbeat")
        count.add_metric([], len(procs))
        busy = _gauge("worker_busy", "Jobs the worker runs now", ["worker"])
        cap = _gauge("worker_concurrency", "Job slots of the worker", ["worker"])
        util = _gauge("worker_utilisation_ratio", "Busy slots over slots", ["worker"])
        rss = _gauge("worker_rss_bytes", "Resident memory of the worker", ["worker"])
        beat = _gauge("worker_heartbeat_age_seconds", "Time since the worker's last beat",
                      ["worker"])
        now = time.time()
        for p in procs:
            busy.add_metric([p.identity], p.busy)
            cap.add_metric([p.identity], p.concurrency)
            util.add_metric([p.identity], p.busy / p.concurrency if p.concurrency else 0.0)
            rss.add_metric([p.identity], p.rss_kb * 1024.0)
            beat.add_metric([p.identity], max(0.0, now - p.beat))
        yield from (count, busy, cap, util, rss, beat)

    def _recent(self, procs: list[Any]) -> Iterator[Metric]:
        """The summaries the live workers publish (``conveyor.latency``): a view of the last
        minute, as gauges; exact rates and percentiles come from the workers' own metrics."""
        recent = self.inspector.recent_runs(procs)
        run = _gauge("recent_job_duration_seconds", "Run time of the jobs the live workers "
                     "finished in the last minute, by quantile", ["quantile"])
        wait = _gauge("recent_job_wait_seconds", "Enqueue-to-start wait of the jobs the live "
                      "workers started in the last minute, by quantile", ["quantile"])
        for q in RECENT_QUANTILES:
            for gauge, value in ((run, getattr(recent, f"run_p{round(q * 100)}_s")),
                                 (wait, getattr(recent, f"wait_p{round(q * 100)}_s"))):
                if value is not None:
                    gauge.add_metric([f"{q:g}"], value)
        runs = _gauge("recent_jobs", "Runs the live workers finished in the last minute, by "
                      "outcome", ["outcome"])
        for outcome, n in sorted(recent.outcomes.items()):
            runs.add_metric([outcome], n)
        dead = _gauge("recent_dead_lettered_jobs", "Jobs the live workers sent to the dead set "
                      "without running in the last minute, by reason", ["reason"])
        for reason, n in sorted(recent.dead_lettered.items()):
            dead.add_metric([reason], n)
        reporting = _gauge("recent_reporting_workers", "Live workers whose heartbeat carries a "
                           "recent-run summary")
        reporting.add_metric([], recent.reporting)
        yield from (run, wait, runs, dead, reporting)


# --- circuit breakers (conveyor.flow) ---------------------------------------------------------
BREAKER_STATE_VALUES = {"closed": 0.0, "half-open": 1.0, "open": 2.0}


class BreakerCollector(Collector):
    """``conveyor_breaker_state`` and ``conveyor_breaker_transitions`` of every circuit breaker,
    job types' and HTTP sidecars' alike, read through ``Inspector.flow`` at scrape time.

    Transitions are counted from each breaker's event log in Redis (its last ``EVENTS_KEPT``
    transitions): events newer than the last scrape's are added, so the counter grows by what
    happened between scrapes, starts with the retained history, and restarts with the process
    like any counter. A breaker that half-opened without anyone asking yet logged no event.
    """

    def __init__(self, inspector: Any) -> None:
        self.inspector = inspector
        self._seen: dict[str, tuple[float, int]] = {}  # name -> newest event counted, how many
        self._counts: dict[tuple[str, str], int] = {}  # (name, state entered) -> transitions

    def collect(self) -> Iterator[Metric]:
        if not hasattr(type(self.inspector), "flow"):
            return
        from .flow.views import EVENTS_KEPT

        state = _gauge("breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open",
                       ["name"])
        moves = CounterMetricFamily("conveyor_breaker_transitions", "Circuit breaker state "
                                    "changes, by the state entered", labels=["name", "to"])
        for info in self.inspector.flow.breakers(events=EVENTS_KEPT):
            state.add_metric([info.name], BREAKER_STATE_VALUES.get(info.state, 0.0))
            self._count(info.name, info.events)
            for to in BREAKER_STATE_VALUES:
                moves.add_metric([info.name, to], self._counts.get((info.name, to), 0))
        yield from (state, moves)

    def _count(self, name: str, events: list[tuple[float, str]]) -> None:
        last, at_last = self._seen.get(name, (float("-inf"), 0))
        same = [st for ts, st in events if ts == last]
        new = [st for ts, st in events if ts > last] + same[: max(0, len(same) - at_last)]
        for st in new:
            self._counts[(name, st)] = self._counts.get((name, st), 0) + 1
        if events:
            newest = max(ts for ts, _ in events)
            self._seen[name] = (newest, sum(1 for ts, _ in events if ts == newest))


class ApiMetrics:
    """Request counts and latencies of the API, by route template (bounded labels)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("conveyor_api_requests", "API requests answered",
                                ["method", "route", "status"], registry=registry)
        self.latency = Histogram("conveyor_api_request_duration_seconds",
                                 "Time to answer an API request", ["method", "route"],
                                 buckets=API_BUCKETS_S, registry=registry)
        self.cut = Counter("conveyor_api_connections_cut", "Connections closed because the "
                           "request did not arrive within the deadline", ["reason"],
                           registry=registry)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)


class WorkerMetrics:
    """A worker observer (``Worker(observers=[...])``) plus, once bound to the worker, a
    collector of its slots, executors and recoveries."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.jobs = Counter("conveyor_jobs", "Job runs by queue, type and outcome (completed, "
                            "retry, dead, discard, cancelled)", ["queue", "type", "outcome"],
                            registry=self.registry)
        self.run_time = Histogram("conveyor_job_duration_seconds", "Run time of job code",
                                  ["queue", "type"], buckets=RUN_BUCKETS_S,
                                  registry=self.registry)
        self.wait = Histogram("conveyor_job_wait_seconds", "Time from enqueue to start",
                              ["queue"], buckets=WAIT_BUCKETS_S, registry=self.registry)
        self.executor_wait = Histogram(
            "conveyor_executor_queue_seconds", "Time a job waited inside its executor before "
            "running (pool hand-off; for the http executor, the sidecar bridge)", ["executor"],
            buckets=RUN_BUCKETS_S, registry=self.registry)
        self.executor_run = Histogram(
            "conveyor_executor_run_seconds", "Run time of jobs in each executor (for the http "
            "executor, the sidecar call)", ["executor"], buckets=RUN_BUCKETS_S,
            registry=self.registry)
        self.dead_lettered = Counter(
            "conveyor_dead_lettered_jobs", "Jobs sent to the dead set without running, by "
            "reason (MalformedJob, UnknownJobType)", ["queue", "reason"], registry=self.registry)
        self._queue_executors: dict[str, str] = {}
        self._bound = False

    def bind(self, worker: Any) -> None:
        """Called by the worker it observes: from now on scrapes read that worker's state."""
        if not self._bound:
            self.registry.register(_WorkerCollector(worker))
            self._queue_executors = dict(getattr(worker, "queue_executors", None) or {})
            self._bound = True

    def job_started(self, job: Any, spec: Any) -> None:
        enqueued = enqueued_seconds(job.data)
        if enqueued is not None:
            self.wait.labels(job.queue).observe(max(0.0, time.time() - enqueued))

    def job_finished(self, job: Any, spec: Any, outcome: Any, result: str) -> None:
        self.jobs.labels(job.queue, job.name, result).inc()
        self.run_time.labels(job.queue, job.name).observe(outcome.duration_s)
        # the executor that ran it: a --executor QUEUE=KIND override wins over the job's own
        kind = self._queue_executors.get(job.queue) or spec.executor_kind
        self.executor_wait.labels(kind).observe(outcome.queued_s)
        self.executor_run.labels(kind).observe(outcome.duration_s)

    def job_dead_lettered(self, queue: str, reason: str) -> None:
        self.dead_lettered.labels(queue, reason).inc()


def executor_healthy(executor: Any) -> bool:
    """What ``conveyor_executor_healthy`` reports for an executor.

    An executor that supervises a sidecar (``http`` with ``command=``) is healthy while its
    supervisor saw the sidecar answer its health check and has not seen it die since; one built
    on a zygote (``process``, ``fork``) while that zygote lives (it is revived on the next job);
    any other while it is not stopped. The executor contract has no health call, so this reads
    those parts where they exist. The state of a sidecar reached by ``url=`` shows in its
    circuit breaker instead.
    """
    supervisor = getattr(executor, "supervisor", None)
    if supervisor is not None:
        return bool(getattr(supervisor, "healthy", False))
    zygote = getattr(executor, "_zygote", None)
    if zygote is not None:
        return bool(getattr(zygote, "alive", False))
    return not getattr(executor, "_closed", False)


class _WorkerCollector(Collector):
    def __init__(self, worker: Any) -> None:
        self.worker = worker

    def collect(self) -> Iterator[Metric]:
        w = self.worker
        running = len(w.running)
        for name, doc, value in (
                ("worker_in_flight", "Jobs this worker runs now", running),
                ("worker_capacity", "Job slots of this worker", w.concurrency),
                ("worker_utilisation_ratio", "In-flight jobs over slots", running / w.concurrency),
                ("worker_quiet", "1 when the worker stopped fetching", float(w.quiet))):
            g = _gauge(name, doc)
            g.add_metric([], value)
            yield g
        yield from self._executors()
        yield from self._recoveries()

    def _executors(self) -> Iterator[Metric]:
        in_flight = _gauge("executor_in_flight", "Tasks running in the executor", ["executor"])
        cap = _gauge("executor_capacity", "Tasks the executor runs at once", ["executor"])
        tasks = CounterMetricFamily("conveyor_executor_tasks", "Tasks the executor finished",
                                    labels=["executor", "outcome"])
        restarts = CounterMetricFamily("conveyor_executor_restarts", "Times the executor "
                                       "replaced a crashed pool, process or connection",
                                       labels=["executor"])
        healthy = _gauge("executor_healthy", "1 when the executor can run jobs (its sidecar "
                         "answers, its zygote lives), else 0", ["executor"])
        for kind, ex in sorted(self.worker.executors.items()):
            st = ex.stats()
            in_flight.add_metric([kind], st.in_flight)
            cap.add_metric([kind], st.capacity)
            tasks.add_metric([kind, "ok"], st.completed)
            tasks.add_metric([kind, "failed"], st.failed)
            restarts.add_metric([kind], st.restarts)
            healthy.add_metric([kind], 1.0 if executor_healthy(ex) else 0.0)
        yield from (in_flight, cap, tasks, restarts, healthy)

    def _recoveries(self) -> Iterator[Metric]:
        duties = getattr(self.worker, "duties", [])
        recovered = sum(getattr(d, "recovered_jobs", 0) for d in duties)
        buried = sum(getattr(d, "buried", 0) for d in duties)
        r = CounterMetricFamily("conveyor_recovered_jobs", "Jobs of lost workers this worker "
                                "put back in their queues")
        r.add_metric([], recovered)
        b = CounterMetricFamily("conveyor_poison_jobs", "Jobs this worker moved to the dead set "
                                "after they lost their worker too many times")
        b.add_metric([], buried)
        yield from (r, b)


def serve_metrics(registry: CollectorRegistry, port: int,
                  host: str = DEFAULT_METRICS_HOST) -> Any:
    """Serve ``registry`` at ``http://host:port/metrics`` from a daemon thread; returns the
    server (``shutdown()`` then ``server_close()`` stop it; port 0 picks a free port, found in
    ``server.server_address``)."""
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server


def worker_observers(metrics_port: int | None = None, metrics_host: str = DEFAULT_METRICS_HOST,
                     job_logs: bool = False, trace: bool = False) -> list[Any]:
    """The observers ``conveyor worker``'s flags ask for: Prometheus metrics served on
    ``metrics_port``, one log line per job start and end, OpenTelemetry run spans."""
    observers: list[Any] = []
    if metrics_port is not None:
        wm = WorkerMetrics()
        serve_metrics(wm.registry, metrics_port, metrics_host)
        observers.append(wm)
    if job_logs:
        from .logs import LoggingObserver

        observers.append(LoggingObserver())
    if trace:
        from .tracing import TracingObserver, available

        if not available():
            raise ConfigurationError("--trace needs the OpenTelemetry packages: "
                                     "pip install 'conveyor[otel]'")
        observers.append(TracingObserver())
    return observers
