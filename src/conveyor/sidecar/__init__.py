"""The Python sidecar: an ASGI app that runs an App's registered jobs for an ``http`` executor.

``create_app(app)`` builds the Starlette application speaking ``docs/sidecar-protocol.md``;
``conveyor sidecar --app pkg.module:app --port 9292`` (``cli.sidecar_app``) serves it with uvicorn.
"""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
