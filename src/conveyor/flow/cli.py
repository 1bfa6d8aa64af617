"""``conveyor limits|breakers|cron|workflow ...``: flow control from the command line.

Mounted by ``conveyor.cli``; every read and change goes through ``Inspector(...).flow``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Annotated, Any

import typer

from ..cli import STATE, JsonOpt, emit, out
from ..errors import ConveyorError
from .cron import CronEntry

limits_app = typer.Typer(no_args_is_help=True, help="Rate and concurrency limits per job type.")
breakers_app = typer.Typer(no_args_is_help=True, help="Circuit breakers shared by all workers.")
cron_app = typer.Typer(no_args_is_help=True, help="Periodic jobs.")
workflow_app = typer.Typer(no_args_is_help=True, help="Chains and groups of jobs.")


def _json_arg(text: str, kind: type, flag: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConveyorError(f"{flag} is not valid JSON: {exc}") from None
    if not isinstance(value, kind):
        raise ConveyorError(f"{flag} must be a JSON {'array' if kind is list else 'object'}")
    return value


# --- limits --------------------------------------------------------------------------------
@limits_app.command("ls")
def limits_ls(job_type: Annotated[str | None, typer.Option("--type")] = None,
              key: Annotated[str | None, typer.Option(help="A concrete key, e.g. tenant:42.")]
              = None, as_json: JsonOpt = False) -> None:
    """Every limit with its current use."""
    rows = []
    for lim in STATE.inspector.flow.limits(job_type, key):
        row = dataclasses.asdict(lim)
        usage = row.pop("usage") or {}
        row["use"] = (f"{usage.get('used', usage.get('running'))}/{usage.get('limit')}"
                      if usage else "(per key)")
        rows.append(row if not as_json else {**row, "usage": usage})
    emit(rows, ["job_type", "kind", "key", "description", "source", "use"], "limits", as_json)


@limits_app.command("set")
def limits_set(job_type: str,
               rate: Annotated[str | None, typer.Option(help="e.g. 10/s, 100/m bucket.")] = None,
               concurrency: Annotated[int | None, typer.Option()] = None,
               key: Annotated[str | None, typer.Option(help="Key template for both.")] = None,
               no_rate: Annotated[bool, typer.Option("--no-rate")] = False,
               no_concurrency: Annotated[bool, typer.Option("--no-concurrency")] = False) -> None:
    """Override a job type's limits at run time (workers apply it within seconds)."""
    from .concurrency import ConcurrencyLimit
    from .ratelimit import RateLimit

    changes: dict[str, Any] = {}
    if rate is not None or no_rate:
        changes["rate_limit"] = None if no_rate else RateLimit.parse(rate or "", key).to_json()
    if concurrency is not None or no_concurrency:
        changes["concurrency_limit"] = (None if no_concurrency
                                        else ConcurrencyLimit(concurrency or 0, key).to_json())
    if not changes:
        raise ConveyorError("give --rate, --concurrency, --no-rate or --no-concurrency")
    info = STATE.inspector.flow.set_policy(job_type, **changes)
    out.print(f"{job_type}: {'; '.join(info.effective) or 'no limits'}")


@limits_app.command("clear")
def limits_clear(job_type: str) -> None:
    """Drop the run-time override of a job type (its declared limits apply again)."""
    cleared = STATE.inspector.flow.clear_policy(job_type)
    out.print("cleared" if cleared else f"{job_type} had no run-time override")


# --- breakers ------------------------------------------------------------------------------
BREAKER_COLUMNS = ["name", "state", "failures", "retry_in_s", "probes", "window_calls",
                   "window_failures", "opened_count"]


@breakers_app.command("ls")
def breakers_ls(as_json: JsonOpt = False) -> None:
    """Every breaker with its state."""
    emit(STATE.inspector.flow.breakers(), BREAKER_COLUMNS, "breakers", as_json)


@breakers_app.command("reset")
def breakers_reset(name: str) -> None:
    """Close a breaker by hand."""
    out.print(f"{name}: {STATE.inspector.flow.reset_breaker(name).state}")


@breakers_app.command("open")
def breakers_open(name: str, for_s: Annotated[float, typer.Option("--for")] = 60.0) -> None:
    """Open a breaker by hand for a while (jobs are deferred, not failed)."""
    out.print(f"{name}: {STATE.inspector.flow.open_breaker(name, for_s).state}")


# --- cron ----------------------------------------------------------------------------------
@cron_app.command("ls")
def cron_ls(as_json: JsonOpt = False) -> None:
    """Periodic jobs with their last and next slots."""
    emit(STATE.inspector.flow.cron_entries(), ["name", "job", "schedule", "tz", "enabled",
                                               "source", "last_slot", "next_slot"], "cron",
         as_json)


@cron_app.command("add")
def cron_add(name: str, job: Annotated[str, typer.Option(help="Job type.")],
             cron: Annotated[str | None, typer.Option(help="Cron expression.")] = None,
             every: Annotated[float | None, typer.Option(help="Interval in seconds.")] = None,
             tz: str = "UTC", queue: str = "default", args: str = "[]", kwargs: str = "{}",
             catch_up: Annotated[str, typer.Option(help="one, all or none.")] = "one") -> None:
    """Add (or replace) a periodic job at run time."""
    entry = CronEntry(name, job, cron=cron, every_s=every, tz=tz, queue=queue,
                      args=_json_arg(args, list, "--args"),
                      kwargs=_json_arg(kwargs, dict, "--kwargs"), catch_up=catch_up)
    info = STATE.inspector.flow.add_cron(entry)
    out.print(f"added {info.name}: {info.schedule} ({info.tz})")


@cron_app.command("rm")
def cron_rm(name: str) -> None:
    """Remove a periodic job."""
    out.print("removed" if STATE.inspector.flow.remove_cron(name) else f"no entry {name!r}")


@cron_app.command("pause")
def cron_pause(name: str) -> None:
    STATE.inspector.flow.set_cron_enabled(name, False)
    out.print(f"paused {name}")


@cron_app.command("resume")
def cron_resume(name: str) -> None:
    STATE.inspector.flow.set_cron_enabled(name, True)
    out.print(f"resumed {name}")


@cron_app.command("run")
def cron_run(app: Annotated[str, typer.Option(help="pkg.module:app with your jobs.")],
             interval: Annotated[float, typer.Option(help="Seconds between ticks.")] = 1.0
             ) -> None:
    """Run only the cron scheduler (workers also run one) until TERM/INT."""
    import signal

    from ..app import load_app
    from ..embedded import resolve_redis_url
    from .cronduty import run_cron

    application = load_app(app)
    application.settings = STATE.settings.with_(
        redis_url=STATE.settings.redis_url or application.settings.redis_url)
    url = resolve_redis_url(application.settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_cron(application, url, stop, interval)

    asyncio.run(main())


# --- workflows -----------------------------------------------------------------------------
@workflow_app.command("show")
def workflow_show(wfid: str, as_json: JsonOpt = False) -> None:
    """A workflow's state and every node's."""
    info = STATE.inspector.flow.workflow(wfid)
    if as_json:
        out.print_json(json.dumps(dataclasses.asdict(info), default=str))
        return
    out.print(f"workflow {info.id}: {info.state}")
    emit(info.nodes, ["id", "kind", "parent", "state", "jid", "name"], "nodes", False)
