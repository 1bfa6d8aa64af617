"""Fixtures for the flow-control tests: a broker with short TTLs on the session's real Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conveyor.broker import SyncBroker
from conveyor.settings import Settings


@pytest.fixture
def broker(redis_url: str) -> Iterator[SyncBroker]:
    b = SyncBroker(redis_url, Settings(lease_ttl_s=10, status_ttl_s=3600, max_recoveries=2,
                                       dead_max_jobs=10))
    yield b
    b.close()
