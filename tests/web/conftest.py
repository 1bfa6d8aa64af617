"""Fixtures of the dashboard tests; the app, tokens and server helpers are the API tests'."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "api"))

from api_helpers import make_app, running_api

from conveyor import App
from conveyor.api import BackgroundServer


@pytest.fixture
def job_app(redis_url: str) -> Iterator[App]:
    app = make_app(redis_url)
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def web(job_app: App) -> Iterator[BackgroundServer]:
    with running_api(job_app) as server:
        yield server
