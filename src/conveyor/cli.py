"""The ``conveyor`` command line (typer + rich). Every listing takes ``--json``.

All reads and admin actions go through :class:`conveyor.admin.Inspector`. Errors the user can
fix (a wrong ``--app``, an unreachable Redis, bad JSON) print one clear line and exit 1.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from datetime import datetime
from typing import Annotated, Any

import redis
import typer
from rich.console import Console
from rich.table import Table

from .admin import Inspector
from .broker import SyncBroker
from .errors import ConveyorError
from .settings import Settings

cli = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Conveyor: background jobs, Sidekiq-compatible workers and pipelines.")
job_cli = typer.Typer(no_args_is_help=True, help="Show, cancel or retry one job.")
queue_cli = typer.Typer(no_args_is_help=True, help="List, pause, resume or purge queues.")
scheduled_cli = typer.Typer(no_args_is_help=True, help="Scheduled jobs.")
retries_cli = typer.Typer(no_args_is_help=True, help="Jobs waiting for their next retry.")
dead_cli = typer.Typer(no_args_is_help=True, help="The dead set.")
cli.add_typer(job_cli, name="job")
cli.add_typer(queue_cli, name="queue")
cli.add_typer(scheduled_cli, name="scheduled")
cli.add_typer(retries_cli, name="retries")
cli.add_typer(dead_cli, name="dead")

out = Console()
err = Console(stderr=True)


@dataclasses.dataclass
class Ctx:
    settings: Settings
    as_json: bool = False
    _broker: SyncBroker | None = None

    @property
    def broker(self) -> SyncBroker:
        if self._broker is None:
            from .embedded import resolve_redis_url

            self._broker = SyncBroker(resolve_redis_url(self.settings), self.settings)
        return self._broker

    @property
    def inspector(self) -> Inspector:
        return Inspector(self.broker)


STATE = Ctx(Settings())
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@cli.callback()
def _root(
    redis_url: Annotated[str | None, typer.Option(
        envvar="CONVEYOR_REDIS_URL", help="Redis URL (default: embedded server).")] = None,
    namespace: Annotated[str | None, typer.Option(help="Key prefix for a shared Redis.")] = None,
    data_dir: Annotated[str | None, typer.Option(
        help="Embedded server folder (./.conveyor).")] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Debug logging.")] = False,
) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    STATE.settings = Settings.from_env(redis_url=redis_url, namespace=namespace, data_dir=data_dir)


def emit(rows: Any, columns: list[str], title: str, as_json: bool) -> None:
    """Print dataclasses (or dicts) as a table or as JSON."""
    items = [dataclasses.asdict(r) if dataclasses.is_dataclass(r) and not isinstance(r, type)
             else r for r in rows]
    if as_json:
        out.print_json(json.dumps(items, default=str))
        return
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for item in items:
        table.add_row(*[_cell(item.get(c)) for c in columns])
    out.print(table)


def _cell(value: Any) -> str:
    if isinstance(value, float) and value > 1e9:
        return datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list | dict):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else text[:57] + "..."
    return "" if value is None else str(value)


# --- the stack ---------------------------------------------------------------------------------
@cli.command()
def up(
    app: Annotated[str | None, typer.Option(help="pkg.module:app with your jobs.")] = None,
    concurrency: Annotated[int, typer.Option("-c", "--concurrency")] = 10,
    api_port: Annotated[int, typer.Option(help="Port of the API and dashboard (0: none).")]
    = 8181,
    insecure_local: Annotated[bool, typer.Option(
        help="API and dashboard without a token (they listen on 127.0.0.1 only).")] = False,
) -> None:
    """Run the embedded Redis, the API and dashboard, a worker and the scheduler."""
    from .app import load_app
    from .embedded import resolve_redis_url

    url = resolve_redis_url(STATE.settings)
    err.print(f"[green]Redis[/green] {url}")
    app_path = app or "conveyor.demo:app"
    if api_port:
        from .api.cli import start_in_background

        application = load_app(app_path)
        application.settings = STATE.settings.with_(redis_url=url)
        start_in_background(application, api_port, insecure_local)
    worker(app=app_path, queue=None, concurrency=concurrency, strict=False)


@cli.command()
def down() -> None:
    """Stop the embedded Redis server of this folder."""
    from .embedded import stop_server

    stopped = stop_server(STATE.settings.data_dir)
    out.print("stopped" if stopped else "no embedded server was running")


@cli.command()
def worker(
    app: Annotated[str, typer.Option(help="pkg.module:app with your jobs.")],
    queue: Annotated[list[str] | None, typer.Option("-q", "--queue",
                                                    help="name[,weight]; repeat for more.")] = None,
    concurrency: Annotated[int, typer.Option("-c", "--concurrency")] = 10,
    strict: Annotated[bool, typer.Option(help="Strict queue order instead of weighted.")] = False,
    metrics_port: Annotated[int | None, typer.Option(
        help="Serve Prometheus metrics on this port.")] = None,
    metrics_host: Annotated[str, typer.Option(help="Address for --metrics-port.")] = "127.0.0.1",
    log_format: Annotated[str, typer.Option(
        help="text, or json (one object per line, with a line per job start and end).")]
    = "text",
    trace: Annotated[bool, typer.Option(help="OpenTelemetry span per job run.")] = False,
    executor: Annotated[list[str] | None, typer.Option(
        "--executor", help="QUEUE=KIND: run every job of QUEUE in that executor "
        "(asyncio, thread, process, fork, http); repeat for more.")] = None,
    sidecar_command: Annotated[str | None, typer.Option(
        help="Start and supervise this HTTP sidecar ({port} is filled in).")] = None,
    sidecar_url: Annotated[str | None, typer.Option(help="URL of a running sidecar.")] = None,
    processes: Annotated[int | None, typer.Option(help="Size of the process pool.")] = None,
    max_tasks_per_child: Annotated[int | None, typer.Option(
        help="Recycle a pool process after this many jobs.")] = None,
    max_rss_mb: Annotated[int | None, typer.Option(
        help="Recycle a pool process above this resident memory.")] = None,
) -> None:
    """Run a worker until TERM/INT (TSTP quiets it, TTIN dumps stacks)."""
    from .app import load_app
    from .logs import configure_logging
    from .metrics import worker_observers
    from .worker import parse_queue_option, run_worker

    if log_format != "text":
        configure_logging(log_format)
    observers = worker_observers(metrics_port, metrics_host, log_format == "json", trace)

    application = load_app(app)
    application.settings = STATE.settings.with_(
        redis_url=STATE.settings.redis_url or application.settings.redis_url)
    queues = [parse_queue_option(q) for q in queue] if queue else None
    executor_options = _executor_options(sidecar_command, sidecar_url, processes,
                                         max_tasks_per_child, max_rss_mb)
    run_worker(application, queues, concurrency=concurrency, strict=strict, observers=observers,
               executor_options=executor_options, queue_executors=_queue_executors(executor))
    _exit_if_job_threads_remain()


def _exit_if_job_threads_remain() -> None:
    """Exit now if job threads outlived the grace period.

    A thread cannot be killed, and the interpreter would wait for the thread pool's threads at
    exit. Their jobs were already handed back to their queues, so waiting would let another
    worker run them while this one still does (issue 9, scenario 2).
    """
    import os
    import threading

    stuck = [t for t in threading.enumerate()
             if t.name.startswith("conveyor-job") and t.is_alive()]
    if stuck:
        logging.getLogger("conveyor.worker").warning(
            "exiting with %d job thread(s) still running; their jobs were handed back to "
            "their queues", len(stuck))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _queue_executors(values: list[str] | None) -> dict[str, str]:
    """``--executor QUEUE=KIND`` flags as a mapping; the kind is checked when the worker starts."""
    out: dict[str, str] = {}
    for value in values or []:
        queue, sep, kind = value.partition("=")
        if not sep or not queue or not kind:
            raise ConveyorError(
                f"--executor {value!r} must look like QUEUE=KIND, e.g. reports=process")
        out[queue.strip()] = kind.strip()
    return out


def _executor_options(sidecar_command: str | None, sidecar_url: str | None,
                      processes: int | None, max_tasks: int | None,
                      max_rss_mb: int | None) -> dict[str, dict[str, Any]]:
    """Worker flags -> ``create_executor`` options per executor kind."""
    http: dict[str, Any] = {}
    if sidecar_command:
        http["command"] = sidecar_command
    if sidecar_url:
        http["url"] = sidecar_url
    process = {k: v for k, v in (("processes", processes), ("max_tasks_per_child", max_tasks),
                                 ("max_rss_mb", max_rss_mb)) if v is not None}
    return {kind: opts for kind, opts in (("http", http), ("process", process)) if opts}


@cli.command()
def enqueue(
    job_type: Annotated[str, typer.Argument(metavar="TYPE", help="Registered job type.")],
    args: Annotated[str, typer.Option(help="JSON array of arguments.")] = "[]",
    kwargs: Annotated[str, typer.Option(help="JSON object of keyword arguments.")] = "{}",
    queue: Annotated[str | None, typer.Option()] = None,
    priority: Annotated[str | None, typer.Option(help="high, normal or low.")] = None,
    in_: Annotated[float | None, typer.Option("--in", help="Run after N seconds.")] = None,
    at: Annotated[str | None, typer.Option(help="Run at an ISO 8601 time.")] = None,
) -> None:
    """Enqueue a job by type name."""
    from .app import App

    try:
        parsed_args = json.loads(args)
        parsed_kwargs = json.loads(kwargs)
    except json.JSONDecodeError as exc:
        raise ConveyorError(f"--args/--kwargs is not valid JSON: {exc}") from None
    if not isinstance(parsed_args, list):
        raise ConveyorError("--args must be a JSON array, e.g. '[1, \"x\"]'")
    if not isinstance(parsed_kwargs, dict):
        raise ConveyorError("--kwargs must be a JSON object")
    when = datetime.fromisoformat(at) if at else None
    handle = App(settings=STATE.settings).enqueue(
        job_type, args=parsed_args, kwargs=parsed_kwargs, queue=queue, priority=priority,
        delay=in_, at=when)
    out.print(handle.id)


# --- jobs ----------------------------------------------------------------------------------------
@job_cli.command("show")
def job_show(jid: str, as_json: JsonOpt = False) -> None:
    """A job's state, attempts, timestamps, error and result."""
    st = STATE.inspector.job(jid)
    if as_json:
        out.print_json(json.dumps(dataclasses.asdict(st), default=str))
        return
    table = Table(title=f"job {jid}", show_header=False)
    for key, value in dataclasses.asdict(st).items():
        table.add_row(key, _cell(value))
    out.print(table)


@job_cli.command("cancel")
def job_cancel(jid: str) -> None:
    """Cancel a queued, scheduled or running job."""
    prev = STATE.inspector.cancel(jid)
    out.print(f"cancelled (was {prev})" if prev not in ("completed", "dead", "failed",
                                                         "cancelled") else f"already {prev}")


@job_cli.command("retry")
def job_retry(jid: str) -> None:
    """Run a job from the retry, dead or scheduled set now."""
    STATE.inspector.retry_now(jid)
    out.print("enqueued")


# --- queues --------------------------------------------------------------------------------------
@queue_cli.command("ls")
def queue_ls(as_json: JsonOpt = False) -> None:
    """Queues with their size, latency and paused state."""
    emit(STATE.inspector.queues(), ["name", "size", "latency_s", "paused"], "queues", as_json)


@queue_cli.command("pause")
def queue_pause(name: str) -> None:
    STATE.inspector.pause(name)
    out.print(f"paused {name}")


@queue_cli.command("resume")
def queue_resume(name: str) -> None:
    STATE.inspector.resume(name)
    out.print(f"resumed {name}")


@queue_cli.command("purge")
def queue_purge(name: str, yes: Annotated[bool, typer.Option("--yes")] = False) -> None:
    """Delete every job waiting in a queue."""
    if not yes and not typer.confirm(f"delete every job in queue {name!r}?"):
        raise typer.Exit(1)
    out.print(f"deleted {STATE.inspector.purge(name)} job(s)")


SET_COLUMNS = ["jid", "name", "queue", "score", "retry_count", "error_class", "error_message",
               "args"]


def _list_set(set_name: str, limit: int, offset: int, as_json: bool) -> None:
    emit(STATE.inspector.entries(set_name, offset, limit), SET_COLUMNS, set_name, as_json)


@scheduled_cli.command("ls")
def scheduled_ls(limit: int = 50, offset: int = 0, as_json: JsonOpt = False) -> None:
    _list_set("schedule", limit, offset, as_json)


@retries_cli.command("ls")
def retries_ls(limit: int = 50, offset: int = 0, as_json: JsonOpt = False) -> None:
    _list_set("retry", limit, offset, as_json)


@dead_cli.command("ls")
def dead_ls(limit: int = 50, offset: int = 0, as_json: JsonOpt = False) -> None:
    _list_set("dead", limit, offset, as_json)


@dead_cli.command("requeue")
def dead_requeue(jid: Annotated[list[str] | None, typer.Argument()] = None,
                 all_: Annotated[bool, typer.Option("--all")] = False) -> None:
    """Requeue dead jobs by id, or all of them with --all."""
    if not jid and not all_:
        raise ConveyorError("name job ids to requeue, or pass --all")
    out.print(f"requeued {STATE.inspector.requeue('dead', None if all_ else jid)} job(s)")


@dead_cli.command("purge")
def dead_purge(jid: Annotated[list[str] | None, typer.Argument()] = None,
               yes: Annotated[bool, typer.Option("--yes")] = False) -> None:
    """Delete dead jobs by id, or all of them."""
    if not jid and not yes and not typer.confirm("delete every job in the dead set?"):
        raise typer.Exit(1)
    out.print(f"deleted {STATE.inspector.delete('dead', jid or None)} job(s)")


@cli.command()
def stats(as_json: JsonOpt = False) -> None:
    """Totals: processed, failed, enqueued, scheduled, retries, dead, processes, busy."""
    s = STATE.inspector.stats()
    if as_json:
        out.print_json(json.dumps(dataclasses.asdict(s)))
        return
    emit([{"metric": k, "value": v} for k, v in dataclasses.asdict(s).items()],
         ["metric", "value"], "stats", False)


@cli.command()
def workers(as_json: JsonOpt = False) -> None:
    """Worker processes with their queues, concurrency and busy jobs."""
    emit(STATE.inspector.processes(),
         ["identity", "queues", "concurrency", "busy", "quiet", "rss_kb"], "workers", as_json)


@cli.command()
def health(as_json: JsonOpt = False) -> None:
    """Is Redis reachable and configured safely for jobs? Exit 1 when not."""
    h = STATE.inspector.health()
    if as_json:
        out.print_json(json.dumps(dataclasses.asdict(h)))
    elif h.ok:
        out.print(f"[green]ok[/green] redis {h.redis_version}, rtt {h.rtt_ms} ms, "
                  f"aof {'on' if h.aof_enabled else 'off'}, policy {h.maxmemory_policy}")
        for w in h.warnings:
            out.print(f"[yellow]warning:[/yellow] {w}")
    else:
        err.print(f"[red]unhealthy:[/red] {h.error}")
    if not h.ok:
        raise typer.Exit(1)


@cli.command()
def demo(jobs: Annotated[int, typer.Option(help="How many plain jobs to run.")] = 20) -> None:
    """Run the demo workload on the embedded Redis and show what happened to each job."""
    from .demo import run_demo

    raise typer.Exit(run_demo(STATE.settings, jobs))


def _mount_optional() -> None:
    """Sub-commands that live beside their feature (pipelines, sidecar, API...)."""
    import importlib

    for module, attr, name in (("conveyor.pipeline.cli", "pipeline_app", "pipeline"),
                               ("conveyor.sidecar.cli", "sidecar_app", "sidecar"),
                               ("conveyor.api.cli", "api_app", "api"),
                               ("conveyor.api.cli", "top_app", "top"),
                               ("conveyor.flow.cli", "limits_app", "limits"),
                               ("conveyor.flow.cli", "breakers_app", "breakers"),
                               ("conveyor.flow.cli", "cron_app", "cron"),
                               ("conveyor.flow.cli", "workflow_app", "workflow")):
        try:
            sub = getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:
            if exc.name and module.startswith(exc.name):
                continue
            raise
        cli.add_typer(sub, name=name)


def main() -> None:
    _mount_optional()
    try:
        code = cli(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except (ConveyorError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        sys.exit(1)
    except redis.ConnectionError as exc:
        err.print(f"[red]error:[/red] cannot reach Redis: {exc}")
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
