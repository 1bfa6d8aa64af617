"""Fixtures of the chaos suite: one ledger server for the session, and rigs closed after each test.

Each rig has its own Redis under test (so a scenario may kill it), and each test's worker logs
are printed when the test fails.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from redis_server import RedisServer, require_server_binary

from .rig import Rig


@pytest.fixture(scope="session")
def ledger_server() -> Iterator[RedisServer]:
    """The ledger's Redis: never faulted, shared by the session (reset per rig)."""
    with RedisServer(require_server_binary()) as server:
        yield server


@pytest.fixture
def make_rig(ledger_server: RedisServer, tmp_path: Path,
             request: pytest.FixtureRequest) -> Iterator[Callable[..., Rig]]:
    """``make_rig(**options)`` builds a :class:`Rig`; all are closed when the test ends."""
    rigs: list[Rig] = []

    def make(**options: Any) -> Rig:
        rig = Rig(ledger_server.url, log_dir=tmp_path, **options)
        rigs.append(rig)
        return rig

    yield make
    failed = getattr(request.node, "rep_call", None)
    for rig in rigs:
        if (failed is not None and failed.failed) or os.environ.get("CHAOS_SHOW_LOGS"):
            print(rig.logs())
        rig.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report
