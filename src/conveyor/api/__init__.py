"""The REST API and web dashboard: one ASGI app (FastAPI) served by uvicorn.

``create_app(ApiConfig(...), app)`` builds it; ``conveyor api`` serves it. Every read and
admin action goes through :class:`conveyor.admin.Inspector`; enqueueing goes through the app's
client. See docs/api.md and docs/dashboard.md.

The names below are imported on first use (PEP 562), so that the CLI, which mounts ``conveyor
api`` and ``conveyor top`` from this package, does not import FastAPI for every command: about
0.4 s of each ``conveyor worker`` start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .config import ApiConfig, Scope, Token, parse_token
    from .server import BackgroundServer, make_server

__all__ = ["ApiConfig", "BackgroundServer", "Scope", "Token", "create_app", "make_server",
           "parse_token"]
_HOMES = {"create_app": ".app", "ApiConfig": ".config", "Scope": ".config", "Token": ".config",
          "parse_token": ".config", "BackgroundServer": ".server", "make_server": ".server"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home, __name__), name)
