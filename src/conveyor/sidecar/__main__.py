"""``python -m conveyor.sidecar --app pkg.module:app --port 9292``."""

from __future__ import annotations

from .cli import sidecar_app

sidecar_app(prog_name="conveyor sidecar")
