"""Running the API under uvicorn, with the receive deadline of ``limits.py`` as its protocol.

:func:`make_server` builds a configured ``uvicorn.Server``; :class:`BackgroundServer` runs one
in a daemon thread (what ``conveyor up`` and the tests use) and knows the port it got.
"""

from __future__ import annotations

import threading
import time

import uvicorn

from ..app import App
from .app import create_app
from .config import ApiConfig
from .limits import deadline_protocol

MAX_HEADER_BYTES = 16 * 1024  # h11 refuses a request whose headers grow past this
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.01


def make_server(config: ApiConfig, app: App | None = None,
                log_level: str = "warning") -> uvicorn.Server:
    """A uvicorn server for the API and dashboard of ``app`` under ``config``."""
    asgi = create_app(config, app)
    cut = asgi.state.metrics.cut
    protocol = deadline_protocol(config.receive_deadline_s,
                                 lambda reason: cut.labels(reason).inc())
    uv_config = uvicorn.Config(
        asgi, host=config.host, port=config.port, http=protocol, ws="none", lifespan="on",
        timeout_keep_alive=config.keep_alive_s, log_level=log_level, access_log=False,  # type: ignore[arg-type]
        server_header=False, proxy_headers=False,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES)
    return uvicorn.Server(uv_config)


class BackgroundServer:
    """A uvicorn server in a daemon thread: ``start()`` waits until it listens."""

    def __init__(self, server: uvicorn.Server) -> None:
        self.server = server
        self.thread = threading.Thread(target=server.run, name="conveyor-api", daemon=True)

    def start(self, timeout_s: float = START_TIMEOUT_S) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start (is the port in use?)")
            time.sleep(POLL_S)
        return self

    @property
    def port(self) -> int:
        sockets = self.server.servers[0].sockets
        return int(sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        host = self.server.config.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        self.server.should_exit = True
        self.thread.join(timeout_s)
