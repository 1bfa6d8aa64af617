"""``conveyor api`` (serve the REST API and dashboard, or make a token) and ``conveyor top``.

Both are typer apps that ``conveyor.cli`` mounts; they read the Redis URL and namespace the root
command parsed (``conveyor --redis-url ... api``).
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from ..settings import Settings
from .config import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    MAX_BODY_BYTES,
    REQUEST_RECEIVE_DEADLINE_S,
    ApiConfig,
    Scope,
    new_secret,
    parse_token,
    session_secret_from_env,
    tokens_from_env,
)

api_app = typer.Typer(help="The REST API and web dashboard.", no_args_is_help=False)
top_app = typer.Typer(help="A live terminal view of queues, throughput and workers.")


def _settings() -> Settings:
    from ..cli import STATE

    return STATE.settings


@api_app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    app: Annotated[str | None, typer.Option(help="pkg.module:app whose job types it accepts.")]
    = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_PORT,
    token: Annotated[list[str] | None, typer.Option(
        help="scope:secret (admin, enqueue or read); repeat. Also CONVEYOR_API_TOKENS.")] = None,
    insecure_local: Annotated[bool, typer.Option(
        help="No authentication (loopback addresses only).")] = False,
    cors_origin: Annotated[list[str] | None, typer.Option(
        help="Allow browser calls from this origin; repeat. Off by default.")] = None,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body.")] = MAX_BODY_BYTES,
    receive_deadline: Annotated[float, typer.Option(
        help="Seconds a client has to send a whole request.")] = REQUEST_RECEIVE_DEADLINE_S,
    metrics_public: Annotated[bool, typer.Option(
        help="Serve /metrics without a token.")] = False,
    job_type: Annotated[list[str] | None, typer.Option(
        help="Accept this job type though --app does not register it (e.g. Ruby workers).")]
    = None,
    cookie_secure: Annotated[bool, typer.Option(
        help="Mark the session cookie Secure (behind an HTTPS proxy).")] = False,
    log_format: Annotated[str, typer.Option(help="text or json.")] = "text",
) -> None:
    """Serve the REST API under /api/v1 and the dashboard under / (Ctrl-C stops)."""
    if ctx.invoked_subcommand is not None:
        return
    from ..app import App, load_app
    from ..logs import configure_logging
    from .server import make_server

    configure_logging(log_format)
    settings = _settings()
    application = load_app(app) if app else App(settings=settings)
    if app:
        application.settings = settings.with_(
            redis_url=settings.redis_url or application.settings.redis_url)
    config = ApiConfig(host=host, port=port, insecure_local=insecure_local,
                       tokens=[parse_token(t) for t in token or []] + tokens_from_env(),
                       cors_origins=list(cors_origin or []), max_body_bytes=max_body_bytes,
                       receive_deadline_s=receive_deadline, metrics_public=metrics_public,
                       extra_job_types=list(job_type or []), cookie_secure=cookie_secure)
    secret = session_secret_from_env()
    if secret:
        config.session_secret = secret
    config.check()
    generated = config.ensure_token()
    if generated:
        print(f"No token given; this run's admin token is: {generated}", file=sys.stderr)
    logging.getLogger("conveyor.api").info("serving on http://%s:%d", host, port)
    make_server(config, application, log_level="info").run()


def start_in_background(application: object, port: int = DEFAULT_PORT,
                        insecure_local: bool = False) -> object:
    """The API and dashboard for ``conveyor up``: on 127.0.0.1 in a thread; prints the
    generated admin token unless ``insecure_local``."""
    from .server import BackgroundServer, make_server

    config = ApiConfig(port=port, insecure_local=insecure_local, tokens=tokens_from_env())
    config.session_secret = session_secret_from_env() or config.session_secret
    generated = config.ensure_token()
    server = BackgroundServer(make_server(config, application)).start()  # type: ignore[arg-type]
    print(f"API and dashboard on {server.url}", file=sys.stderr)
    if generated:
        print(f"admin token for this run: {generated}", file=sys.stderr)
    return server


@api_app.command("token")
def make_token(scope: Annotated[str, typer.Argument(help="admin, enqueue or read")] = "admin"
               ) -> None:
    """Print a new random token as scope:secret, for --token or CONVEYOR_API_TOKENS."""
    typer.echo(f"{Scope.parse(scope).name.lower()}:{new_secret()}")


@top_app.callback(invoke_without_command=True)
def top(
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 2.0,
    plain: Annotated[bool, typer.Option(
        help="One line per interval (the default when not on a terminal).")] = False,
    count: Annotated[int, typer.Option(help="Stop after this many refreshes (0: never).")] = 0,
) -> None:
    """A live view: queue depths and latency, throughput, workers, busy jobs, errors.
    Keys: q quit, p pause, h help."""
    from ..admin import Inspector
    from ..broker import SyncBroker
    from ..embedded import resolve_redis_url
    from ..tui.top import run_top

    settings = _settings()
    inspector = Inspector(SyncBroker(resolve_redis_url(settings), settings))
    raise typer.Exit(run_top(inspector, interval_s=interval, plain=plain or None,
                             count=count or None))
