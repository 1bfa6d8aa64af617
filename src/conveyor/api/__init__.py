"""The REST API and web dashboard: one ASGI app (FastAPI) served by uvicorn.

``create_app(ApiConfig(...), app)`` builds it; ``conveyor api`` serves it. Every read and
admin action goes through :class:`conveyor.admin.Inspector`; enqueueing goes through the app's
client. See docs/api.md and docs/dashboard.md.
"""

from .app import create_app
from .config import ApiConfig, Scope, Token, parse_token
from .server import BackgroundServer, make_server

__all__ = ["ApiConfig", "BackgroundServer", "Scope", "Token", "create_app", "make_server",
           "parse_token"]
