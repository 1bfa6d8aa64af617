"""The demo workload behind ``make demo``: a worker on the embedded Redis runs a mix of jobs
(plain ones, one that fails twice then succeeds, one that ends in the dead set, a scheduled one,
high- and low-priority ones) while a live table shows each job's state; a summary ends it.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from rich.console import Console
from rich.live import Live
from rich.table import Table

from .app import App
from .client import JobHandle, JobStatus
from .context import current_job
from .retry import Backoff
from .settings import Settings

app = App()
QUICK = Backoff(base_s=1.0, factor=1.0, cap_s=2.0, jitter=0.0)
DEMO_TIMEOUT_S = 60.0
REFRESH_S = 0.2


@app.job(name="demo.resize_image")
def resize_image(image_id: int, width: int = 640) -> dict[str, int]:
    time.sleep(random.uniform(0.05, 0.3))
    return {"image_id": image_id, "width": width}


@app.job(name="demo.flaky_upload", retry=5, backoff=QUICK)
def flaky_upload(name: str) -> str:
    attempt = current_job().attempt
    if attempt <= 2:
        raise ConnectionError(f"upload of {name} failed on attempt {attempt}")
    return f"uploaded {name} on attempt {attempt}"


@app.job(name="demo.doomed", retry=1, backoff=QUICK)
def doomed(reason: str) -> None:
    raise ValueError(reason)


@app.job(name="demo.send_report")
async def send_report(to: str) -> str:
    await asyncio.sleep(0.1)
    return f"report sent to {to}"


@dataclass
class Entry:
    label: str
    handle: JobHandle
    status: JobStatus | None = None


def _enqueue_workload(n: int) -> list[Entry]:
    entries = [Entry(f"resize #{i}", resize_image.enqueue(i)) for i in range(n)]
    entries.append(Entry("flaky upload (fails twice)", flaky_upload.enqueue("photo.png")))
    entries.append(Entry("doomed (ends dead)", doomed.enqueue("bad input")))
    entries.append(Entry("scheduled report (+3s)", send_report.enqueue_in(3, "ops@example.com")))
    entries.append(Entry("high priority", app.enqueue("demo.resize_image", args=[1000],
                                                      priority="high")))
    entries.append(Entry("low priority", app.enqueue("demo.resize_image", args=[2000],
                                                     priority="low")))
    return entries


def _table(entries: list[Entry], elapsed: float) -> Table:
    table = Table(title=f"Conveyor demo — {elapsed:.1f}s")
    for col in ("job", "id", "state", "attempts", "result / error"):
        table.add_column(col)
    colors = {"completed": "green", "dead": "red", "retrying": "yellow", "active": "cyan",
              "scheduled": "magenta"}
    for e in entries:
        st = e.status
        state = st.state if st else "?"
        detail = ""
        if st and st.result is not None:
            detail = str(st.result)
        elif st and st.error_class:
            detail = f"{st.error_class}: {st.error_message}"
        table.add_row(e.label, e.handle.id[:8], f"[{colors.get(state, 'white')}]{state}[/]",
                      str(st.attempts if st else 0), detail[:60])
    return table


async def _main(n: int, console: Console) -> int:
    from .worker import Worker

    entries = _enqueue_workload(n)
    worker = Worker(app, concurrency=8)
    stop = asyncio.Event()
    runner = asyncio.create_task(worker.run(stop))
    started = time.monotonic()
    with Live(console=console, refresh_per_second=8) as live:
        while time.monotonic() - started < DEMO_TIMEOUT_S:
            for e in entries:
                e.status = await asyncio.to_thread(e.handle.status)
            live.update(_table(entries, time.monotonic() - started))
            if all(e.status and e.status.finished for e in entries):
                break
            await asyncio.sleep(REFRESH_S)
    stop.set()
    await runner
    return _summary(entries, console, time.monotonic() - started)


def _summary(entries: list[Entry], console: Console, elapsed: float) -> int:
    by_state: dict[str, int] = {}
    for e in entries:
        state = e.status.state if e.status else "unknown"
        by_state[state] = by_state.get(state, 0) + 1
    console.print(f"\n[bold]Summary[/bold] after {elapsed:.1f}s: " +
                  ", ".join(f"{n} {s}" for s, n in sorted(by_state.items())))
    for e in entries[-5:]:
        st = e.status
        if st:
            what = st.result if st.state == "completed" else f"{st.error_class}: {st.error_message}"
            console.print(f"  {e.label}: {st.state} after {st.attempts} attempt(s) — {what}")
    expected_dead = 1
    completed = by_state.get("completed", 0)
    ok = by_state.get("dead", 0) == expected_dead and completed == len(entries) - 1
    console.print("[green]demo finished as expected[/green]" if ok
                  else "[red]demo did not finish as expected[/red]")
    return 0 if ok else 1


def run_demo(settings: Settings, n: int = 20) -> int:
    """Run the demo against the configured Redis (the embedded one by default)."""
    app.settings = settings
    app.close()
    console = Console()
    console.print(f"Conveyor demo: {n + 5} jobs on "
                  f"{settings.redis_url or 'the embedded Redis in ' + str(settings.data_dir)}")
    return asyncio.run(_main(n, console))
