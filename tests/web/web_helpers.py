"""Logging in to the dashboard with httpx and reading the CSRF token of a page."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import httpx

from conveyor.api import BackgroundServer

CSRF_FIELD = re.compile(r'name="csrf" value="([^"]*)"')


@contextlib.contextmanager
def session(server: BackgroundServer, token: str) -> Iterator[httpx.Client]:
    """A client holding a dashboard session opened with ``token``."""
    with httpx.Client(base_url=server.url, timeout=10.0) as c:
        r = c.post("/login", data={"token": token, "next": "/"})
        assert r.status_code == 303, r.text
        assert "conveyor_session" in c.cookies
        yield c


def csrf_of(c: httpx.Client, page: str = "/queues") -> str:
    match = CSRF_FIELD.search(c.get(page).text)
    assert match, f"no CSRF field on {page}"
    return match.group(1)
