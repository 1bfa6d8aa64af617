"""The live HUD: ``pipe.run(hud=True)`` or ``conveyor pipeline run pkg.mod:pipe --hud``.

A frame, top to bottom: a status line; one queue-depth bar per edge (the first thing to read in
a backpressured pipeline: a full queue sits in front of the stage that holds the flow back, and
Minigun's HUD has none); the stage table (throughput over the last interval, p50/p99, in flight,
errors, retries, restarts, time blocked on a full downstream queue, busy share), with the
bottleneck highlighted; the stage graph; the keys. On a terminal the keys work: ``q`` stops the
run (``run()`` then raises ``PipelineError``), ``p`` pauses and resumes the producers (queued
items drain), ``h`` toggles help. When stdout is not a terminal, one plain line is printed per
interval instead.

:func:`render_frame` and :func:`plain_line` are pure functions of a stats snapshot, so tests
render frames to text.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..tui.dag import draw_dag
from ..tui.keys import read_keys
from ..tui.widgets import human_count, human_ms, human_rate, human_seconds, queue_gauge
from .config import defaults
from .stats import PipelineStats, StageStats

if TYPE_CHECKING:
    from .graph import Graph
    from .pipeline import Pipeline
    from .run import Run, RunResult

KEYS_HELP = "q quit · p pause/resume producers · h help"
STATE_STYLE = {"running": "green", "paused": "yellow", "done": "blue", "failed": "bold red"}


class Rates:
    """Items per second of each stage over the last interval, from successive snapshots."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, int]] = {}
        self.current: dict[str, float] = {}

    def update(self, stats: PipelineStats) -> dict[str, float]:
        now = stats.elapsed_s
        for s in stats.stages:
            count = s.items_out if s.kind == "producer" else s.items_in
            t0, c0 = self._last.get(s.name, (0.0, 0))
            if now > t0:
                self.current[s.name] = (count - c0) / (now - t0)
            self._last[s.name] = (now, count)
        return self.current


def render_frame(
    stats: PipelineStats,
    rates: dict[str, float] | None = None,
    *,
    show_help: bool = False,
    keys: bool = False,
) -> RenderableType:
    """The whole HUD screen for one snapshot."""
    rates = rates or {}
    parts: list[RenderableType] = [_status(stats, keys)]
    if show_help:
        parts.append(Panel(Text(KEYS_HELP.replace(" · ", "\n")), title="keys", title_align="left"))
    parts.append(_queues(stats))
    parts.append(_table(stats, rates))
    parts.append(Panel(_graph(stats), title="graph", title_align="left"))
    return Group(*parts)


def _status(stats: PipelineStats, keys: bool) -> Text:
    text = Text(f"pipeline {stats.name}  ", style="bold")
    text.append(stats.state.upper(), style=STATE_STYLE.get(stats.state, ""))
    text.append(f"  {human_seconds(stats.elapsed_s)}  outputs {human_count(stats.outputs)}")
    if stats.bottleneck:
        text.append("  bottleneck ", style="dim")
        text.append(stats.bottleneck, style="bold red")
    if stats.error:
        text.append(f"\nerror: {stats.error}", style="bold red")
    if keys:
        text.append(f"   {KEYS_HELP}", style="dim")
    return text


def _queues(stats: PipelineStats) -> Table:
    table = Table(title="queues (per edge)", title_justify="left", expand=True, box=None)
    table.add_column("edge")
    table.add_column("depth")
    table.add_column("sender blocked", justify="right")
    by_name = {s.name: s for s in stats.stages}
    for src, dst in stats.edges:
        s, sender = by_name.get(dst), by_name.get(src)
        if s is None or sender is None:
            continue
        table.add_row(
            Text(f"{src} → {dst}", style="bold red" if s.bottleneck else ""),
            queue_gauge(s.queue_depth, s.queue_capacity, s.queue_peak),
            f"{sender.blocked_s:.2f}s" if sender.blocked_s else "",
        )
    return table


def _table(stats: PipelineStats, rates: dict[str, float]) -> Table:
    table = Table(title="stages", title_justify="left", expand=True)
    columns = (
        "stage",
        "strategy",
        "in",
        "out",
        "rate",
        "p50",
        "p99",
        "in flight",
        "errors",
        "retried",
        "restarts",
        "blocked",
        "busy",
    )
    for name in columns:
        table.add_column(name, justify="left" if name in ("stage", "strategy") else "right")
    for s in stats.stages:
        table.add_row(
            *_row(s, rates.get(s.name, s.throughput_per_s)),
            style="bold red" if s.bottleneck else None,
        )
    return table


def _row(s: StageStats, rate: float) -> list[Any]:
    name = Text(s.name + (" ◀ bottleneck" if s.bottleneck else "") + (" ✓" if s.done else ""))
    errors = Text(str(s.failed), style="red" if s.failed else "")
    restarts = Text(str(s.restarts), style="yellow" if s.restarts else "")
    return [
        name,
        s.strategy,
        human_count(s.items_in),
        human_count(s.items_out),
        human_rate(rate),
        human_ms(s.latency_p50_ms),
        human_ms(s.latency_p99_ms),
        str(s.in_flight),
        errors,
        str(s.retried),
        restarts,
        f"{s.blocked_s:.2f}s",
        f"{s.busy_ratio:.0%}",
    ]


def _graph(stats: PipelineStats) -> RenderableType:
    by_name = {s.name: s for s in stats.stages}

    def label(name: str) -> Text:
        s = by_name[name]
        style = "bold red" if s.bottleneck else "red" if s.failed else ""
        return Text(f"{name} ", style=style) + Text(f"[{s.kind}, {s.strategy}]", style="dim")

    return draw_dag([s.name for s in stats.stages], stats.edges, label)


def plain_line(stats: PipelineStats, rates: dict[str, float] | None = None) -> str:
    """One line per interval for logs and pipes."""
    rates = rates or {}
    parts = [f"[{stats.elapsed_s:7.1f}s] {stats.state} out={stats.outputs}"]
    for s in stats.stages:
        rate = human_rate(rates.get(s.name, s.throughput_per_s))
        queue = f" q={s.queue_depth}/{s.queue_capacity}" if s.queue_capacity else ""
        errors = f" err={s.failed}" if s.failed else ""
        parts.append(f"{s.name}{queue} {rate} p50={human_ms(s.latency_p50_ms)}{errors}")
    if stats.bottleneck:
        parts.append(f"bottleneck={stats.bottleneck}")
    return " | ".join(parts)


class Hud:
    """Draws a run's snapshots on a thread until the run ends."""

    def __init__(self, console: Console, interval_s: float) -> None:
        self.console = console
        self.interval_s = interval_s
        self.rates = Rates()
        self.show_help = False
        self.keys = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.run: Run | None = None

    def start(self, run: Run) -> None:
        self.run = run
        self._thread = threading.Thread(target=self._loop, name="conveyor-hud", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def on_key(self, key: str) -> None:
        run = self.run
        key = key.lower()
        if run is None:
            return
        if key == "q":
            run.cancel("the run was stopped from the HUD (q)")
        elif key == "p" and run.paused:
            run.resume()
        elif key == "p":
            run.pause()
        elif key in ("h", "?"):
            self.show_help = not self.show_help

    def frame(self) -> RenderableType:
        assert self.run is not None
        stats = self.run.snapshot()
        return render_frame(
            stats, self.rates.update(stats), show_help=self.show_help, keys=self.keys
        )

    def _loop(self) -> None:
        assert self.run is not None
        if not self.console.is_terminal:
            while not self._stop.wait(self.interval_s):
                stats = self.run.snapshot()
                self.console.print(
                    plain_line(stats, self.rates.update(stats)),
                    markup=False,
                    highlight=False,
                    soft_wrap=True,
                )
            stats = self.run.snapshot()
            self.console.print(plain_line(stats), markup=False, highlight=False, soft_wrap=True)
            return
        with (
            read_keys(self.on_key) as self.keys,
            Live(self.frame(), console=self.console, auto_refresh=False) as live,
        ):
            while not self._stop.wait(self.interval_s):
                live.update(self.frame(), refresh=True)
            live.update(self.frame(), refresh=True)


def run_with_hud(
    pipe: Pipeline,
    graph: Graph,
    collect: bool,
    hud: Hud | None = None,
) -> RunResult:
    """Run the pipeline with the HUD drawing until it ends (the last frame stays on screen)."""
    hud = hud or Hud(Console(), defaults().hud_interval_s)
    try:
        return asyncio.run(pipe._execute(graph, collect, hud.start))
    finally:
        if hud.run is not None:
            hud.run.ended = hud.run.ended or time.perf_counter()
        hud.stop()
