"""Every Redis key name Conveyor uses, built in one place.

Sidekiq-compatible keys keep Sidekiq's names (``queue:<q>``, ``queues``, ``schedule``, ``retry``,
``dead``, ``processes``, ``stat:*``); Conveyor's own state lives under ``conveyor:``. An optional
namespace prefixes every key, like redis-namespace does for Sidekiq 6 apps. ``docs/redis-layout.md``
describes each key's type and contents.
"""

from __future__ import annotations

from dataclasses import dataclass

OWN_PREFIX = "conveyor:"


@dataclass(frozen=True)
class Keys:
    """Key builder for one namespace ("" means none, as plain Sidekiq)."""

    namespace: str = ""

    def _k(self, name: str) -> str:
        return f"{self.namespace}:{name}" if self.namespace else name

    # --- Sidekiq-compatible ---------------------------------------------------------------
    @property
    def queues(self) -> str:
        """SET of queue names."""
        return self._k("queues")

    def queue(self, name: str) -> str:
        """LIST of raw job JSON; LPUSH at the head, fetched from the tail."""
        return self._k(f"queue:{name}")

    @property
    def queue_prefix(self) -> str:
        return self._k("queue:")

    @property
    def schedule(self) -> str:
        """ZSET of scheduled jobs scored by run time (epoch seconds)."""
        return self._k("schedule")

    @property
    def retry(self) -> str:
        """ZSET of failed jobs waiting for their next attempt."""
        return self._k("retry")

    @property
    def dead(self) -> str:
        """ZSET of jobs that will not run again unless requeued."""
        return self._k("dead")

    @property
    def processes(self) -> str:
        """SET of process identities (Sidekiq heartbeat)."""
        return self._k("processes")

    def process(self, identity: str) -> str:
        """HASH with info, busy, beat, quiet, rss, rtt_us."""
        return self._k(identity)

    def process_work(self, identity: str) -> tuple[str, str]:
        """Busy-job hashes for both Sidekiq generations (6.4.1 ``:workers``, 6.4.2+ ``:work``)."""
        return self._k(f"{identity}:workers"), self._k(f"{identity}:work")

    def process_signals(self, identity: str) -> str:
        """LIST of signals pushed by Sidekiq's Web UI (TSTP, TERM, TTIN)."""
        return self._k(f"{identity}-signals")

    def stat(self, name: str, day: str | None = None) -> str:
        """Lifetime (``stat:processed``) or daily (``stat:processed:YYYY-MM-DD``) counter."""
        return self._k(f"stat:{name}:{day}" if day else f"stat:{name}")

    # --- Conveyor's own state --------------------------------------------------------------
    def own(self, name: str) -> str:
        return self._k(OWN_PREFIX + name)

    @property
    def suspects(self) -> str:
        """ZSET "<queue>\\n<raw>" -> ms: jobs lost twice or more, each waiting for its turn to go
        back to the front of its queue (recover.lua)."""
        return self.own("suspects")

    @property
    def leases(self) -> str:
        """ZSET worker id -> lease expiry (ms, Redis clock)."""
        return self.own("leases")

    @property
    def workers(self) -> str:
        """SET of worker ids that hold or held a lease and have not exited cleanly."""
        return self.own("workers")

    def inflight(self, worker_id: str) -> str:
        """HASH fencing token -> "<queue>\\n<raw job>" for jobs this worker runs."""
        return self.own(f"inflight:{worker_id}")

    def claim(self, worker_id: str, queue: str) -> str:
        """LIST a blocked worker moves a job of ``queue`` into before it takes it (in flight)."""
        return self.own(f"claim:{worker_id}:{queue}")

    @property
    def quarantine(self) -> str:
        """LIST "<reason>\\n<raw>" of entries waiting to be buried in the dead set."""
        return self.own("quarantine")

    @property
    def status_prefix(self) -> str:
        return self.own("job:")

    @property
    def token(self) -> str:
        """STRING counter of fencing tokens."""
        return self.own("token")

    def job(self, jid: str) -> str:
        """HASH job status record (state, attempts, timestamps, error, result), with a TTL."""
        return self.own(f"job:{jid}")

    def recoveries(self, jid: str) -> str:
        """STRING count of times the job was recovered from a lost worker, with a TTL."""
        return self.own(f"recoveries:{jid}")

    @property
    def paused(self) -> str:
        """SET of paused queue names."""
        return self.own("paused")

    @property
    def worker_info(self) -> str:
        """HASH worker id -> JSON description (executors, pid, host) for the admin views."""
        return self.own("worker-info")

    def scheduler_lock(self) -> str:
        return self.own("scheduler-lock")

    # --- flow control, unique jobs, cron and workflows (conveyor.flow) -------------------------
    # Lua derives a few companion keys from these by a suffix (``<rate key>:cursor``,
    # ``<breaker key>:probes`` / ``:window`` / ``:events``); docs/flow-control.md lists them.
    def rate(self, key: str) -> str:
        """ZSET (sliding window) or HASH (token bucket) of one rate limit key."""
        return self.own(f"rate:{key}")

    def concurrency(self, key: str) -> str:
        """ZSET of the holders ("<worker id>|<token>") of one concurrency limit key."""
        return self.own(f"concurrency:{key}")

    def breaker(self, name: str) -> str:
        """HASH state of one circuit breaker (state, failures, open_until...)."""
        return self.own(f"breaker:{name}")

    @property
    def breakers(self) -> str:
        """SET of circuit breaker names that have recorded a call."""
        return self.own("breakers")

    @property
    def flow_policies(self) -> str:
        """HASH job type -> JSON flow policy set at run time (overrides the declared one)."""
        return self.own("flow:policies")

    @property
    def flow_declared(self) -> str:
        """HASH job type -> JSON flow policy declared in code, published by workers."""
        return self.own("flow:declared")

    def unique(self, key: str) -> str:
        """STRING jid of the job holding a unique lock, with a TTL."""
        return self.own(f"unique:{key}")

    @property
    def cron_entries(self) -> str:
        """HASH entry name -> JSON definition of a periodic job."""
        return self.own("cron:entries")

    @property
    def cron_last(self) -> str:
        """HASH entry name -> the last slot fired (ms since the epoch)."""
        return self.own("cron:last")

    def workflow(self, wfid: str) -> str:
        """HASH of a workflow: its nodes, their states and outcomes."""
        return self.own(f"wf:{wfid}")
