"""The dashboard in a real headless Chromium (Debian's), driven by Playwright for Python.

Log in, watch a queue fill and drain through the live refresh while a real worker runs, open
a failed job, requeue it from the dead set and see it complete. Every page is saved as a
screenshot under ``test-artifacts/`` (the README's image is one of them, copied by hand).
The page must run without Content-Security-Policy violations or script errors.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import ADMIN, FIXED, WorkerThread, wait_until

from conveyor import App
from conveyor.admin import Inspector
from conveyor.api import BackgroundServer
from requires import require_module

pytestmark = pytest.mark.browser
CHROMIUM = os.environ.get("CONVEYOR_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
LIVE_WAIT_MS = 20_000  # the pages refresh every 3 s; allow several refreshes
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

playwright_api = require_module("playwright.sync_api", "pip install -e '.[test]'")


@pytest.fixture
def browser_page() -> Iterator[object]:
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Chromium is required under CI=true ({CHROMIUM})", pytrace=False)
        pytest.skip(f"no Chromium at {CHROMIUM}; run scripts/system-deps.sh")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        yield page
        browser.close()


def _shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)  # type: ignore[attr-defined]


def test_dashboard_flow_in_chromium(browser_page: object, web: BackgroundServer,
                                    job_app: App) -> None:
    page = browser_page
    expect = playwright_api.expect
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: d.accept())
    FIXED.clear()

    page.goto(web.url + "/")
    expect(page).to_have_url(web.url + "/login?next=%2F")
    _shot(page, "login")
    page.fill("#token", ADMIN)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Overview")

    for i in range(40):
        job_app.enqueue("echo", args=[i, {"password": "hunter2"}])
    for _ in range(6):
        job_app.enqueue("slow", args=[0.4])
    job_app.enqueue("echo", args=["later"], delay=3600)
    failing = job_app.enqueue("boom", args=["the <b>mail</b> server said no"],
                              kwargs={"fixed_flag": "yes"}).id
    page.goto(web.url + "/queues")
    depth = page.locator('[data-queue-size="default"]')
    expect(depth).to_have_text("41", timeout=LIVE_WAIT_MS)
    _shot(page, "queues")
    page.goto(web.url + "/queues/default")
    _shot(page, "queue")
    page.goto(web.url + "/queues")

    with WorkerThread(job_app, concurrency=4):
        expect(depth).to_have_text("0", timeout=LIVE_WAIT_MS)  # drained, seen by live refresh
        page.goto(web.url + "/workers")
        expect(page.locator("section.worker")).to_have_count(1, timeout=LIVE_WAIT_MS)
        _shot(page, "workers")
        wait_until(lambda: Inspector(job_app.client.sync).set_size("dead") == 1,
                   what="the failing job in the dead set")

        page.goto(web.url + "/dead")
        row = page.locator("tr", has_text=failing)
        expect(row).to_contain_text("ValueError")
        expect(row).to_contain_text("the <b>mail</b> server said no")  # shown as text
        _shot(page, "dead")
        row.locator("a").first.click()
        expect(page.locator("[data-job-state]")).to_have_text("dead")
        expect(page.locator("p.error")).to_contain_text("the <b>mail</b> server said no")
        _shot(page, "job")

        FIXED.set()  # the job's cause is fixed: requeued, it succeeds
        page.goto(web.url + "/dead")
        page.locator(f'input[name=job_id][value="{failing}"]').check()
        page.click("button:has-text('Requeue selected')")
        expect(page.locator("p.notice")).to_have_text("Requeued 1 job(s).")
        page.goto(web.url + f"/jobs/{failing}")
        expect(page.locator("[data-job-state]")).to_have_text("completed",
                                                              timeout=LIVE_WAIT_MS)

        page.goto(web.url + "/")
        expect(page.locator('[data-stat="processed"]')).not_to_have_text("0")
        page.wait_for_timeout(3500)  # let the chart collect a few samples for the picture
        _shot(page, "overview")
        for name in ("scheduled", "retries") + (("flow",) if hasattr(Inspector, "flow") else ()):
            page.goto(web.url + f"/{name}")
            _shot(page, name)
    FIXED.clear()
    assert "hunter2" not in page.content()
    assert not problems, problems
