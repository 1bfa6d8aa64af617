"""``conveyor top``: frames rendered to text from real samples, keys, the plain fallback, and
one run in a real terminal (tmux) for the keyboard."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from conveyor import App, latency
from conveyor.admin import Inspector, RecentRuns, Stats
from conveyor.settings import Settings
from conveyor.testing import drain
from conveyor.tui.top import (
    Sample,
    TopModel,
    latency_line,
    plain_line,
    read_sample,
    render,
    run_top,
    sparkline,
)

sys.path.insert(0, str(Path(__file__).resolve().parent / "api"))
from api_helpers import WorkerThread, make_app, wait_until

WIDTH = 120


def text_of(model: TopModel) -> str:
    console = Console(record=True, width=WIDTH, file=io.StringIO(), color_system=None)
    console.print(render(model, WIDTH))
    return console.export_text()


def _stats(processed: int, failed: int) -> Stats:
    return Stats(processed, failed, 0, 0, 0, 0, 0, 0, 0)


def test_a_frame_shows_queues_workers_busy_jobs_and_errors(redis_url: str) -> None:
    app = make_app(redis_url)
    ins = Inspector(app.client.sync)
    for i in range(12):
        app.enqueue("echo", args=[i])
    app.enqueue("boom", args=["disk [bold]full[/bold]"])
    drain(app)
    for i in range(7):
        app.enqueue("echo", args=[i], queue="[red]mail[/red]")
    app.enqueue("slow", args=[3.0])
    model = TopModel()
    model.update(read_sample(ins))
    with WorkerThread(app, concurrency=2) as worker:
        wait_until(lambda: ins.processes() and ins.processes()[0].busy == 1, what="a busy job")
        model.update(read_sample(ins))
        frame = text_of(model)
    assert "[red]mail[/red]" in frame, "names are shown as text, never as markup"
    assert "ValueError: disk [bold]full[/bold]" in frame
    assert worker.identity in frame and "1/2" in frame
    assert "slow" in frame and "busy jobs" in frame
    assert "processed         13" in frame
    line = plain_line(model)
    assert "processed=13" in line and "[red]mail[/red]=7" in line and "busy=1/2" in line
    app.close()


def test_rates_sparkline_and_percentiles() -> None:
    model = TopModel()
    for t, p, f in ((0.0, 100, 1), (2.0, 120, 1), (4.0, 180, 5)):
        model.update(Sample(t=1_700_000_000 + t, stats=_stats(p, f)))
    assert model.rates() == [(10.0, 0.0), (30.0, 2.0)]
    assert sparkline([0, 5, 10], 3) == "▁▄█"
    assert sparkline([0, 0], 5) == "▁▁"
    assert "(30.0/s)" in plain_line(model) and "failed=5 (2.0/s)" in plain_line(model)


def _recent(runs: int, run_p50: float | None = None, run_p99: float | None = None,
            reporting: int = 1) -> RecentRuns:
    return RecentRuns(60.0, reporting, runs, {"completed": runs} if runs else {}, {}, run_p50,
                      None, run_p99, 0.004, None, 2.5)


def test_percentiles_are_of_finished_runs_not_of_busy_ones() -> None:
    """Regression: p50/p99 used to be the running time of the jobs busy at the sample, which
    says nothing about how long jobs take; now they are of the last minute's finished runs."""
    model = TopModel()
    model.update(Sample(t=1_700_000_000, stats=_stats(10, 0), recent=_recent(412, 0.0123, 1.5)))
    frame = text_of(model)
    assert "run p50 12.3ms  p99 1.5s" in frame and "wait p50 4.0ms  p99 2.5s" in frame
    assert "(412 runs in the last 60s, 1 worker(s))" in frame
    assert "run_p50=12.3ms run_p99=1.5s wait_p50=4.0ms wait_p99=2.5s" in plain_line(model)
    assert "no job finished in the last 60s" in latency_line(_recent(0)).plain
    assert "no worker publishes" in latency_line(_recent(0, reporting=0)).plain
    assert "no worker publishes" in latency_line(None).plain


def test_a_frame_shows_the_percentiles_workers_published(redis_url: str) -> None:
    app = make_app(redis_url)
    ins = Inspector(app.client.sync)
    for _ in range(3):
        app.enqueue("slow", args=[0.3])
    with WorkerThread(app, concurrency=3):
        wait_until(lambda: ins.recent_runs().runs == 3, what="three finished runs published")
        model = TopModel()
        model.update(read_sample(ins))
    assert model.last is not None and model.last.recent.runs == 3
    frame = text_of(model)
    p50 = model.last.recent.run_p50_s
    assert 0.3 / 1.2 < p50 < 0.5 and f"run p50 {p50 * 1000:.1f}ms" in frame
    assert "(3 runs in the last 60s" in frame
    assert model.last.processes[0].summary["layout"] == latency.LAYOUT
    app.close()


def test_keys_quit_pause_and_help() -> None:
    model = TopModel()
    model.update(Sample(t=1_700_000_000, stats=_stats(1, 0)))
    model.handle_key("h")
    assert "pause or resume refreshing" in text_of(model)
    model.handle_key("p")
    model.update(Sample(t=1_700_000_002, stats=_stats(50, 0)))
    assert model.last.stats.processed == 1 and "[paused]" in text_of(model)
    model.handle_key("p")
    model.update(Sample(t=1_700_000_004, stats=_stats(50, 0)))
    assert model.last.stats.processed == 50
    model.handle_key("q")
    assert not model.running


def test_unreachable_redis_is_shown_not_raised() -> None:
    app = App(settings=Settings(redis_url="redis://127.0.0.1:9/0"))
    model = TopModel()
    model.update(read_sample(Inspector(app.client.sync)))
    assert "Redis unreachable" in text_of(model)
    assert "redis unreachable" in plain_line(model)


def test_plain_mode_prints_one_line_per_interval(redis_url: str) -> None:
    app = make_app(redis_url)
    app.enqueue("echo")
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    started = time.monotonic()
    assert run_top(Inspector(app.client.sync), interval_s=0.05, count=3, console=console) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and all("enqueued=1" in line for line in lines)
    assert time.monotonic() - started < 5
    app.close()


TOP_SCRIPT = """
import sys
from conveyor import App
from conveyor.admin import Inspector
from conveyor.settings import Settings
from conveyor.tui.top import run_top
app = App(settings=Settings(redis_url=sys.argv[1]))
run_top(Inspector(app.client.sync), interval_s=0.2)
print("TOP EXITED")
"""


@pytest.mark.slow  # drives a real terminal: polls tmux's screen until each key took effect
def test_keys_in_a_real_terminal(redis_url: str, tmp_path: Path) -> None:
    if shutil.which("tmux") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tmux is required under CI=true (scripts/system-deps.sh)", pytrace=False)
        pytest.skip("needs tmux (Debian package)")
    script = tmp_path / "top.py"
    script.write_text(TOP_SCRIPT)
    session = f"conveyor-top-{os.getpid()}"
    env = {**os.environ, "TERM": "xterm-256color"}
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "140", "-y", "50",
                    f"{sys.executable} {script} {redis_url}; sleep 30"], check=True, env=env)

    def screen() -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], check=True,
                              capture_output=True, text=True).stdout

    try:
        wait_until(lambda: "throughput" in screen(), what="the first frame")
        subprocess.run(["tmux", "send-keys", "-t", session, "h"], check=True)
        wait_until(lambda: "pause or resume refreshing" in screen(), what="the help panel")
        subprocess.run(["tmux", "send-keys", "-t", session, "p"], check=True)
        wait_until(lambda: "[paused]" in screen(), what="the paused marker")
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        wait_until(lambda: "TOP EXITED" in screen(), what="top to quit on q")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
