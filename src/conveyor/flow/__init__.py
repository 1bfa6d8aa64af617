"""Flow control and workflows: rate limits, concurrency limits, circuit breakers, unique jobs,
periodic jobs (cron) and chains/groups of jobs. ``docs/flow-control.md`` and
``docs/workflows.md`` are the user guides; one module per capability:

==================  ==========================================================================
``ratelimit``       token bucket and sliding-window rate limits (``rate_limit="10/s"``)
``concurrency``     distributed semaphores with leases (``concurrency_limit=3``)
``breaker``         circuit breakers shared in Redis (``breaker=Breaker(...)``, SharedBreaker)
``policy``          a job type's limits, declared in code or overridden at run time
``gate``            the worker's admission check: run now, hold briefly, or defer
``unique``          unique jobs (``unique_key=``, ``unique=Unique(...)``)
``cron``            periodic jobs (``app.cron``/``app.every``) and their slots
``cronduty``        the duty that fires each slot exactly once
``workflow``        ``chain``, ``group`` and ``immutable``
``keytemplate``     keys taken from a job (``"tenant:{args.tenant_id}"``)
``views``/``admin`` what the admin facade (API, CLI, dashboard) reads and changes
==================  ==========================================================================

The atomic parts live in Lua beside the broker: ``admit.lua``, ``breaker_record.lua``,
``cron_fire.lua``, ``workflow_start.lua`` and the ``_flow.lua`` helper that ack, fail, fetch,
promote and bury share.
"""

from .breaker import AsyncSharedBreaker, Breaker, SharedBreaker
from .concurrency import ConcurrencyLimit
from .cron import CronEntry
from .keytemplate import KeyTemplateError
from .ratelimit import RateLimit
from .unique import Unique
from .workflow import WorkflowFailed, WorkflowHandle, chain, group, immutable

__all__ = [
    "AsyncSharedBreaker",
    "Breaker",
    "ConcurrencyLimit",
    "CronEntry",
    "KeyTemplateError",
    "RateLimit",
    "SharedBreaker",
    "Unique",
    "WorkflowFailed",
    "WorkflowHandle",
    "chain",
    "group",
    "immutable",
]
