"""``conveyor top``: a live terminal view of queues, throughput, workers, busy jobs and errors.

Every refresh reads one :class:`Sample` through the admin facade; :class:`TopModel` keeps the
last samples and derives rates; :func:`render` turns the model into rich renderables (a pure
function, so tests render frames to text and assert on them); :func:`plain_line` is the
one-line-per-interval form used when stdout is not a terminal. Keys: ``q`` quits, ``p`` pauses
(the screen keeps the last sample), ``h`` shows help.

Throughput is the change of Sidekiq's ``stat:processed``/``stat:failed`` between samples
(workers flush them on each heartbeat). The p50/p99 figures are of the jobs the live workers
finished (run time) and started (wait from enqueue to start) in the last minute: every worker
publishes a bounded summary of its recent runs with its heartbeat (``conveyor.latency``) and the
facade merges them (``Inspector.recent_runs``). Exact histograms over any range are in the
workers' Prometheus metrics (``conveyor_job_duration_seconds``).
"""

from __future__ import annotations

import itertools
import queue
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..errors import BrokerError
from .keys import read_keys
from .widgets import fill_bar, human_seconds, sparkline

REFRESH_S = 2.0
HISTORY_SAMPLES = 60
BAR_WIDTH = 24
MAX_ROWS = 12  # queues, workers and busy jobs shown at most; the rest are counted
RECENT_ERRORS = 5
HELP = "q quit · p pause/resume · h help"


@dataclass
class Sample:
    """What one refresh read through the facade (or the error that stopped it)."""

    t: float
    stats: Any = None
    queues: list[Any] = field(default_factory=list)
    processes: list[Any] = field(default_factory=list)
    dead: list[Any] = field(default_factory=list)
    rtt_ms: float = 0.0
    error: str = ""
    recent: Any = None  # admin.RecentRuns: percentiles of the last minute's runs


def read_sample(inspector: Any, now: Callable[[], float] = time.time) -> Sample:
    """One sample through the facade; an unreachable Redis gives a sample with ``error``."""
    try:
        health = inspector.health()
        if not health.ok:
            return Sample(now(), error=health.error)
        processes = inspector.processes()
        return Sample(now(), inspector.stats(), inspector.queues(), processes,
                      inspector.entries("dead", limit=RECENT_ERRORS), health.rtt_ms,
                      recent=inspector.recent_runs(processes))
    except (redis.RedisError, BrokerError, OSError) as exc:
        return Sample(now(), error=f"{type(exc).__name__}: {exc}")


class TopModel:
    """The last samples, the derived rates, and the keyboard state."""

    def __init__(self, history: int = HISTORY_SAMPLES) -> None:
        self.samples: deque[Sample] = deque(maxlen=history)
        self.paused = False
        self.show_help = False
        self.running = True

    def update(self, sample: Sample) -> None:
        if not self.paused:
            self.samples.append(sample)

    def handle_key(self, key: str) -> None:
        key = key.lower()
        if key in ("q", "\x03"):
            self.running = False
        elif key == "p":
            self.paused = not self.paused
        elif key in ("h", "?"):
            self.show_help = not self.show_help

    @property
    def last(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    def rates(self) -> list[tuple[float, float]]:
        """(processed/s, failed/s) between each pair of good consecutive samples."""
        good = [s for s in self.samples if s.stats is not None]
        out = []
        for a, b in itertools.pairwise(good):
            dt = b.t - a.t
            if dt > 0:
                out.append((max(0, b.stats.processed - a.stats.processed) / dt,
                            max(0, b.stats.failed - a.stats.failed) / dt))
        return out

    def busy_jobs(self) -> list[tuple[str, str, str, str, float]]:
        """(worker, job id, type, queue, seconds running) of every busy job, longest first."""
        last = self.last
        if last is None:
            return []
        out = []
        for p in last.processes:
            for j in p.jobs:
                payload = j.get("payload") if isinstance(j.get("payload"), dict) else {}
                run_at = j.get("run_at")
                running = max(0.0, last.t - run_at) if isinstance(run_at, int | float) else 0.0
                out.append((p.identity, str(payload.get("jid", "")), str(payload.get("class", "")),
                            str(j.get("queue", "")), running))
        return sorted(out, key=lambda row: -row[4])


def bar(value: float, total: float, width: int = BAR_WIDTH) -> Text:
    return fill_bar(value, total, width)


def _header(model: TopModel, last: Sample) -> Text:
    clock = datetime.fromtimestamp(last.t).strftime("%H:%M:%S")
    text = Text(f"conveyor top  {clock}  ", style="bold")
    if last.error:
        text.append(f"Redis unreachable: {last.error[:120]}", style="bold red")
    else:
        text.append(f"redis rtt {last.rtt_ms:.2f} ms", style="dim")
    if model.paused:
        text.append("  [paused]", style="bold yellow")
    return text.append(f"   {HELP}", style="dim")


def _seconds_or_dash(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.1f}ms" if value < 1 else human_seconds(value)


def latency_line(recent: Any) -> Text:
    """``run p50 12.3ms p99 1.2s · wait p50 ... (412 runs in the last 60s)``, or why not."""
    if recent is None or recent.reporting == 0:
        return Text("run/wait percentiles: no worker publishes a recent-run summary", style="dim")
    window = f"{recent.window_s:.0f}s"
    if recent.runs == 0:
        return Text(f"run/wait percentiles: no job finished in the last {window}", style="dim")
    return Text.assemble(
        ("run p50 ", "dim"), _seconds_or_dash(recent.run_p50_s),
        ("  p99 ", "dim"), _seconds_or_dash(recent.run_p99_s),
        ("   wait p50 ", "dim"), _seconds_or_dash(recent.wait_p50_s),
        ("  p99 ", "dim"), _seconds_or_dash(recent.wait_p99_s),
        (f"   ({recent.runs} runs in the last {window}, {recent.reporting} worker(s))", "dim"))


def _throughput(model: TopModel, last: Sample, width: int) -> Panel:
    rates = model.rates()
    now_p, now_f = rates[-1] if rates else (0.0, 0.0)
    s = last.stats
    lines = Text.assemble(
        ("processed ", "dim"), (f"{s.processed:>10}", "bold"), (f"  {now_p:8.1f}/s  ", "green"),
        (sparkline([r[0] for r in rates], max(10, width - 40)), "green"), "\n",
        ("failed    ", "dim"), (f"{s.failed:>10}", "bold"), (f"  {now_f:8.1f}/s  ", "red"),
        (sparkline([r[1] for r in rates], max(10, width - 40)), "red"), "\n",
        ("enqueued ", "dim"), f"{s.enqueued}  ", ("scheduled ", "dim"), f"{s.scheduled}  ",
        ("retries ", "dim"), f"{s.retries}  ", ("dead ", "dim"), f"{s.dead}  ",
        ("busy ", "dim"), f"{s.busy}", "\n", latency_line(last.recent))
    return Panel(lines, title="throughput", title_align="left")


def _queues(last: Sample) -> Table:
    table = Table(title="queues", title_justify="left", expand=True)
    for name, justify in (("queue", "left"), ("depth", "left"), ("size", "right"),
                          ("latency", "right"), ("state", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    deepest = max([q.size for q in last.queues] + [1])
    for q in sorted(last.queues, key=lambda q: -q.size)[:MAX_ROWS]:
        table.add_row(Text(q.name), bar(q.size, deepest), str(q.size), f"{q.latency_s:.1f}s",
                      Text("paused", style="yellow") if q.paused else Text("running"))
    if len(last.queues) > MAX_ROWS:
        table.add_row(f"... {len(last.queues) - MAX_ROWS} more", "", "", "", "")
    return table


def _errors(last: Sample) -> Table:
    table = Table(title="recent dead jobs", title_justify="left", expand=True)
    for name in ("job", "type", "error"):
        table.add_column(name)
    for e in last.dead:
        table.add_row(Text(e.jid), Text(e.name), Text(f"{e.error_class}: {e.error_message}"[:120],
                                                      style="red"))
    return table


def render(model: TopModel, width: int = 100) -> RenderableType:
    """The whole screen for the model's last sample."""
    last = model.last
    if last is None:
        return Text("waiting for the first sample...")
    parts: list[RenderableType] = [_header(model, last)]
    if model.show_help:
        parts.append(Panel(Text("q  quit\np  pause or resume refreshing\nh  this help"),
                           title="keys", title_align="left"))
    if last.stats is not None:
        parts += [_throughput(model, last, width), _queues(last),
                  Group(*_worker_tables(model, last)), _errors(last)]
    return Group(*parts)


def _worker_tables(model: TopModel, last: Sample) -> list[Table]:
    workers = Table(title="workers", title_justify="left", expand=True)
    for name in ("worker", "busy", "slots", "rss", "beat"):
        workers.add_column(name)
    for p in last.processes[:MAX_ROWS]:
        workers.add_row(Text(p.identity), bar(p.busy, p.concurrency, 12),
                        f"{p.busy}/{p.concurrency}", f"{p.rss_kb // 1024} MiB",
                        f"{max(0.0, last.t - p.beat):.0f}s ago")
    busy = Table(title="busy jobs", title_justify="left", expand=True)
    for name in ("job", "type", "queue", "running"):
        busy.add_column(name)
    for _, jid, kind, q, running in model.busy_jobs()[:MAX_ROWS]:
        busy.add_row(Text(jid), Text(kind), Text(q), f"{running:.0f}s")
    return [workers, busy]


def plain_line(model: TopModel) -> str:
    """One line for logs and pipes: totals, rates, busy slots and the deepest queues."""
    last = model.last
    if last is None:
        return "no sample yet"
    clock = datetime.fromtimestamp(last.t).strftime("%H:%M:%S")
    if last.stats is None:
        return f"{clock} redis unreachable: {last.error}"
    s = last.stats
    rates = model.rates()
    p, f = rates[-1] if rates else (0.0, 0.0)
    slots = sum(pr.concurrency for pr in last.processes)
    deepest = sorted(last.queues, key=lambda q: -q.size)[:5]
    queues = " ".join(f"{q.name}={q.size}" for q in deepest)
    return (f"{clock} processed={s.processed} ({p:.1f}/s) failed={s.failed} ({f:.1f}/s) "
            f"enqueued={s.enqueued} busy={s.busy}/{slots} workers={s.processes} "
            f"retry={s.retries} dead={s.dead}{_plain_latency(last.recent)} "
            f"queues: {queues or '-'}")


def _plain_latency(recent: Any) -> str:
    if recent is None or not recent.runs:
        return ""
    return (f" run_p50={_seconds_or_dash(recent.run_p50_s)}"
            f" run_p99={_seconds_or_dash(recent.run_p99_s)}"
            f" wait_p50={_seconds_or_dash(recent.wait_p50_s)}"
            f" wait_p99={_seconds_or_dash(recent.wait_p99_s)}")


def _wait(keys: queue.Queue[str], model: TopModel, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while model.running:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            model.handle_key(keys.get(timeout=left))
        except queue.Empty:
            return
        return  # redraw at once after a key


def run_top(inspector: Any, interval_s: float = REFRESH_S, plain: bool | None = None,
            count: int | None = None, console: Console | None = None) -> int:
    """Run until ``q``/Ctrl-C (or ``count`` refreshes); returns the exit code."""
    console = console or Console()
    plain = (not console.is_terminal) if plain is None else plain
    model = TopModel()
    done = 0
    try:
        if plain:
            while count is None or done < count:
                model.update(read_sample(inspector))
                console.print(plain_line(model), markup=False, highlight=False, soft_wrap=True)
                done += 1
                if count is None or done < count:
                    time.sleep(interval_s)
            return 0
        # key presses arrive on the shared reader's thread; the queue hands them to this loop
        keys: queue.Queue[str] = queue.Queue()
        with read_keys(keys.put), Live(render(model), console=console, screen=False,
                                       auto_refresh=False) as live:
            while model.running and (count is None or done < count):
                model.update(read_sample(inspector))
                live.update(render(model, console.width), refresh=True)
                done += 1
                _wait(keys, model, interval_s)
    except KeyboardInterrupt:
        pass
    return 0
