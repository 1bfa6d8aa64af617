"""Progress reported by job code reaches the job's status record from every in-worker executor:
thread and asyncio (in this process), process and fork (children, over their channel). A real
worker and Redis; each job reports, waits for the test to read its progress mid-run, reports
again and ends. (The http executor's sidecar protocol has no progress channel: see
docs/sidecar-protocol.md.)"""

from __future__ import annotations

import asyncio
import pathlib
import time
from typing import Any

from conveyor import current_job
from worker_helpers import fast_app, running_worker

RELEASE_WAIT_S = 30.0
POLL_S = 0.01  # how often a job looks for the test's go-ahead file


def _wait_for(marker: str) -> None:
    deadline = time.monotonic() + RELEASE_WAIT_S
    while not pathlib.Path(marker).exists() and time.monotonic() < deadline:
        time.sleep(POLL_S)


def reporting(marker: str) -> str:
    job = current_job()
    job.progress(0.5, "half", step=1, of=2)
    _wait_for(marker)
    job.progress(1.0, "done")
    return job.jid


async def async_reporting(marker: str) -> str:
    job = current_job()
    job.progress(0.5, "half", step=1, of=2)
    while not pathlib.Path(marker).exists():
        await asyncio.sleep(POLL_S)
    job.progress(1.0, "done")
    return job.jid


KINDS = ("thread", "asyncio", "process", "fork")


async def test_progress_is_readable_from_every_executor(redis_url: str,
                                                        tmp_path: pathlib.Path) -> None:
    app = fast_app(redis_url)
    for kind in KINDS:
        fn = async_reporting if kind == "asyncio" else reporting
        app.job(name=f"report_{kind}", executor=kind)(fn)
    marker = str(tmp_path / "go")
    options: dict[str, Any] = {"process": {"processes": 1}, "fork": {"forks": 1}}
    try:
        await _run(app, marker, options)
    finally:
        await app.client.aclose()
        app.close()


async def _run(app: Any, marker: str, options: dict[str, Any]) -> None:
    async with running_worker(app, concurrency=len(KINDS), executor_options=options):
        handles = {kind: await app.aenqueue(f"report_{kind}", args=[marker]) for kind in KINDS}

        async def progress_of(kind: str) -> Any:
            return (await asyncio.to_thread(handles[kind].status)).progress

        deadline = time.monotonic() + 30
        while True:  # every job reported, and is still running
            mid = {k: await progress_of(k) for k in KINDS}
            if all(mid.values()) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        assert mid == {k: {"fraction": 0.5, "message": "half", "meta": {"step": 1, "of": 2}}
                       for k in KINDS}
        pathlib.Path(marker).touch()
        results = {k: await h.aresult(timeout=30) for k, h in handles.items()}
        final = {k: await progress_of(k) for k in KINDS}
    assert results == {k: h.id for k, h in handles.items()}  # current_job() in each
    assert final == {k: {"fraction": 1.0, "message": "done"} for k in KINDS}
