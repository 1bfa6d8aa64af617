"""Hostile job content on every page (T14): script in arguments, error messages, type and
queue names; secrets in arguments; a 100 KB argument. No page may carry markup or script that
did not come from our templates, and no secret value may appear anywhere."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
from api_helpers import ADMIN, WorkerThread, wait_until
from web_helpers import session

from conveyor import App
from conveyor.admin import Inspector
from conveyor.api import BackgroundServer
from conveyor.testing import drain

SCRIPT = "<script>alert('xss')</script>"
ATTRIBUTE = '"><img src=x onerror=alert(1)>'
CONTROL = "line one\r\nline two \x1b[31mred\x1b[0m \u202eevil"
SECRET = "SECRET-VALUE-7d41"
HOSTILE_QUEUE = "<svg/onload=alert(3)>"
HOSTILE_TYPE = "<img/src/onerror=alert(4)>"
BIG = "A" * 100_000


class Markup(HTMLParser):
    """Collects every tag, every event-handler attribute and every script source."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.handlers: list[tuple[str, str]] = []
        self.scripts: list[str | None] = []
        self.styles: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name.startswith("on"):
                self.handlers.append((tag, name))
            if name == "style":
                self.styles.append(value or "")
        if tag == "script":
            self.scripts.append(dict(attrs).get("src"))


ALLOWED_TAGS = {"html", "head", "meta", "title", "link", "script", "body", "header", "a", "nav",
                "div", "button", "span", "form", "input", "main", "p", "h1", "h2", "section",
                "table", "thead", "tbody", "tr", "th", "td", "code", "progress", "canvas", "dl",
                "dt", "dd", "label", "pre", "ol", "li", "time", "strong"}


def _hostile_jobs(app: App) -> list[str]:
    ids = [
        app.enqueue("boom", args=[SCRIPT + ATTRIBUTE + CONTROL],
                    kwargs={"password": SECRET, "nested": {"api_key": SECRET}}).id,
        app.enqueue("echo", args=[ATTRIBUTE, {"token": SECRET}], delay=3600).id,
        app.enqueue(HOSTILE_TYPE, args=[SCRIPT]).id,
        app.enqueue("echo", args=[BIG]).id,
    ]
    drain(app)
    ids.append(app.enqueue("echo", args=[SCRIPT, {"Authorization": SECRET}],
                           queue=HOSTILE_QUEUE).id)
    ids.append(app.enqueue("echo", args=[BIG, CONTROL]).id)
    return ids


def _check_page(url: str, html: str) -> None:
    parser = Markup()
    parser.feed(html)
    assert parser.tags <= ALLOWED_TAGS, (url, parser.tags - ALLOWED_TAGS)
    assert not parser.handlers, (url, parser.handlers)
    assert parser.scripts == ["/static/app.js"], (url, parser.scripts)
    assert not parser.styles, (url, "inline style attribute")
    assert SECRET not in html, url
    assert SCRIPT not in html and "<svg" not in html and "<img" not in html, url
    assert "\x1b" not in html and "\u202e" not in html, (url, "control characters shown raw")


def test_every_page_escapes_hostile_content(web: BackgroundServer, job_app: App) -> None:
    ids = _hostile_jobs(job_app)
    dead = Inspector(job_app.client.sync).entries("dead")
    assert {e.name for e in dead} == {"boom", HOSTILE_TYPE}
    with session(web, ADMIN) as c:
        pages = ["/", "/queues", "/queues/default", f"/queues/{HOSTILE_QUEUE}", "/scheduled",
                 "/retries", "/dead", "/workers", "/dead?type=" + HOSTILE_TYPE]
        pages += [f"/jobs/{jid}" for jid in ids]
        if hasattr(Inspector, "flow"):
            Inspector(job_app.client.sync).flow.open_breaker(SCRIPT, 60)
            pages.append("/flow")
        for url in pages:
            r = c.get(url)
            assert r.status_code in (200, 404), (url, r.status_code)
            _check_page(url, r.text)
            assert len(r.text) < 150_000, (url, len(r.text))
        queue_page = c.get("/queues/default").text
        assert "more characters)" in queue_page, "a 100 KB argument is cut in lists"
        assert "&lt;script&gt;" in c.get("/dead").text


def test_api_listings_redact_secrets(web: BackgroundServer, job_app: App) -> None:
    _hostile_jobs(job_app)
    with httpx.Client(base_url=web.url, headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        for url in ("/api/v1/dead", "/api/v1/scheduled", "/api/v1/queues/default/jobs",
                    f"/api/v1/queues/{HOSTILE_QUEUE}/jobs"):
            r = c.get(url)
            assert r.status_code == 200, url
            assert SECRET not in r.text, url
        first = c.get("/api/v1/dead").json()
        assert any(e["kwargs"].get("password") == "[redacted]" for e in first)


def test_busy_jobs_on_the_workers_page_are_escaped(web: BackgroundServer,
                                                   job_app: App) -> None:
    job_app.enqueue("slow", args=[1.0], kwargs={})
    job_app.enqueue("echo", args=[SCRIPT], queue="slow")
    with WorkerThread(job_app, concurrency=2), session(web, ADMIN) as c:

        def busy_page() -> str | None:
            html = c.get("/workers").text
            return html if re.search(r"<td>slow</td>", html) else None

        _check_page("/workers", wait_until(busy_page, what="a busy job on /workers"))
