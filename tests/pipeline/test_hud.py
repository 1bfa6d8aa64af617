"""The HUD, rendered to text: queue bars first, the bottleneck marked, the graph drawn; the
non-TTY fallback prints lines; the keys stop and pause a real run."""

from __future__ import annotations

import io
import itertools
import threading
import time
from typing import Any

import pytest
from rich.console import Console

from conveyor.errors import PipelineError
from conveyor.pipeline import Pipeline
from conveyor.pipeline.hud import Hud, plain_line, render_frame, run_with_hud


def text_of(renderable: Any, width: int = 160) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def slow_pipeline(seen: list[Any] | None = None) -> Pipeline:
    pipe = Pipeline("demo")
    pipe.processor(lambda x: x, name="fast")
    pipe.processor(lambda x: time.sleep(0.002) or x, name="slow", queue_size=10)

    def sink(x: int) -> None:
        if seen is not None and x == 60 and pipe.current is not None:
            seen.append(pipe.current.snapshot())  # a mid-run snapshot, queues full

    pipe.consumer(sink, name="sink")
    return pipe


def test_frame_leads_with_queue_bars_and_marks_the_bottleneck() -> None:
    seen: list[Any] = []
    slow_pipeline(seen).run(range(100))
    frame = text_of(render_frame(seen[0], show_help=True))
    assert "RUNNING" in frame
    assert frame.index("queues (per edge)") < frame.index("stages") < frame.index("graph")
    assert "fast → slow" in frame and "█" in frame and "peak 10" in frame
    assert "slow ◀ bottleneck" in frame
    assert "bottleneck slow" in frame  # status line
    for header in ("rate", "p50", "p99", "in flight", "errors", "restarts", "blocked"):
        assert header in frame
    assert "q quit" in frame  # the help panel
    graph = frame[frame.index("graph") :]
    assert graph.index("source") < graph.index("fast") < graph.index("slow") < graph.index("sink")


def test_plain_line_has_queues_rates_and_bottleneck() -> None:
    stats = slow_pipeline().run(range(50)).stats
    line = plain_line(stats)
    assert "\n" not in line
    assert "slow q=" in line and "/10" in line and "bottleneck=slow" in line


def test_non_tty_fallback_prints_a_line_per_interval() -> None:
    buffer = io.StringIO()
    hud = Hud(Console(file=buffer, force_terminal=False, width=200), interval_s=0.02)
    pipe = Pipeline("lines")
    pipe.processor(lambda x: time.sleep(0.005) or x, name="work")  # the workload: ~0.2 s
    result = run_with_hud(pipe, pipe.build(range(40)), False, hud)
    lines = buffer.getvalue().strip().splitlines()
    assert len(lines) >= 3
    assert "work q=" in lines[0]
    assert " done " in lines[-1]
    assert result.stats.stage("work").items_in == 40


def test_tty_mode_draws_live_frames() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=160, color_system=None)
    pipe = slow_pipeline()
    pipe.run(range(30), hud=False)
    run_with_hud(pipe, pipe.build(range(30)), False, Hud(console, interval_s=0.02))
    out = buffer.getvalue()
    assert "pipeline demo" in out and "DONE" in out and "queues (per edge)" in out


def test_q_stops_the_run() -> None:
    hud = Hud(Console(file=io.StringIO(), force_terminal=False), interval_s=0.05)
    pipe = Pipeline("endless")
    pipe.producer(itertools.count, name="numbers")
    pipe.consumer(lambda x: x == 10 and hud.on_key("q"), name="sink")
    with pytest.raises(PipelineError, match="stopped from the HUD"):
        run_with_hud(pipe, pipe.build(), False, hud)


def test_p_pauses_and_resumes_the_producers() -> None:
    hud = Hud(Console(file=io.StringIO(), force_terminal=False), interval_s=0.05)
    paused_at: list[int] = []
    resumed = threading.Event()

    def sink(x: int) -> None:
        if x == 5:
            hud.on_key("p")

    def watch() -> None:
        while hud.run is None or not hud.run.paused:
            time.sleep(0.001)
        run = hud.run
        while len(run.channels["sink"]):  # the queued items drain while paused
            time.sleep(0.001)
        produced = run.snapshot().stage("numbers").items_out
        paused_at.append(produced)
        assert run.snapshot().state == "paused"
        hud.on_key("p")
        resumed.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    pipe = Pipeline("pausable")
    pipe.producer(lambda: range(5000), name="numbers")
    pipe.consumer(sink, name="sink", queue_size=8)
    result = run_with_hud(pipe, pipe.build(), False, hud)
    watcher.join(5)
    assert resumed.is_set()
    assert paused_at and paused_at[0] < 5000  # it really stopped short of the end
    assert result.stats.stage("sink").items_in == 5000
