"""Fixtures of the API tests: the job app on the session's Redis and a server for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
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
def api(job_app: App) -> Iterator[BackgroundServer]:
    with running_api(job_app) as server:
        yield server
