"""``conveyor sidecar``: serve an App's jobs to ``http`` executors (mounted as ``sidecar_app``).

Runs uvicorn on one process and event loop. Stopping: SIGTERM or Ctrl-C lets running jobs finish
for ``--graceful`` seconds. Started by a worker (``CONVEYOR_SIDECAR_WATCH_STDIN=1``), it also
stops when its standard input closes, so it never outlives a worker that was SIGKILLed.
"""

from __future__ import annotations

import os
import sys
import threading

import typer

EXIT_WORKER_GONE = 3  # exit status when the supervising worker vanished (stdin closed)
KEEPALIVE_S = 75  # idle keep-alive connections stay open this long (the protocol asks >= 60)

sidecar_app = typer.Typer(help="Run an app's jobs for http executors (the Python sidecar).",
                          add_completion=False, no_args_is_help=False)


@sidecar_app.callback(invoke_without_command=True)
def sidecar(
    app: str = typer.Option(..., "--app", help="The App to serve, as pkg.module:app"),
    host: str = typer.Option("127.0.0.1", help="Address to listen on"),
    port: int = typer.Option(9292, help="Port to listen on"),
    concurrency: int = typer.Option(100, help="Coroutine jobs running at once"),
    threads: int = typer.Option(16, help="Threads for plain-function jobs"),
    graceful: float = typer.Option(30.0, help="Seconds running jobs get when stopping"),
    log_level: str = typer.Option("warning", help="uvicorn log level"),
) -> None:
    """Serve the jobs of ``--app`` by the sidecar protocol (docs/sidecar-protocol.md)."""
    import uvicorn

    from ..app import load_app
    from ..errors import ConfigurationError
    from .app import create_app

    try:
        asgi = create_app(load_app(app), concurrency=concurrency, threads=threads)
    except ConfigurationError as exc:
        typer.echo(f"conveyor sidecar: {exc}", err=True)
        raise typer.Exit(1) from None
    if os.environ.get("CONVEYOR_SIDECAR_WATCH_STDIN") == "1":
        threading.Thread(target=_exit_on_stdin_eof, name="stdin-watch", daemon=True).start()
    config = uvicorn.Config(asgi, host=host, port=port, log_level=log_level, access_log=False,
                            timeout_keep_alive=KEEPALIVE_S,
                            timeout_graceful_shutdown=int(graceful))
    uvicorn.Server(config).run()


def _exit_on_stdin_eof() -> None:
    """The supervising worker holds our stdin open; when it goes, exit at once.

    The worker is gone (a clean stop sends SIGTERM instead, which lets running jobs finish), so
    nobody can read our answers, and the jobs we are running are already being recovered by
    lease on another worker: finishing them here would run them twice side by side (issue 9,
    F12, ``tests/chaos/test_recovery_time.py``).
    """
    while sys.stdin.buffer.read(4096):
        pass
    os._exit(EXIT_WORKER_GONE)
