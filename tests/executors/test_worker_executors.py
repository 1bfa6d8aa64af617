"""The worker's choice of executor per queue (``conveyor worker --executor QUEUE=KIND``)."""

from __future__ import annotations

import os

from worker_helpers import fast_app, running_worker


def where() -> int:
    return os.getpid()


async def test_a_queue_mapped_to_the_process_executor_runs_its_jobs_in_child_processes(
        redis_url: str) -> None:
    app = fast_app(redis_url)
    job = app.job(name="where", queue="cpu")(where)
    plain = app.job(name="where_default")(where)
    h_cpu, h_default = job.enqueue(), plain.enqueue()
    async with running_worker(app, queue_executors={"cpu": "process"}, concurrency=2,
                              queues=None) as worker:
        assert await h_cpu.aresult(timeout=30) != os.getpid()
        assert await h_default.aresult(timeout=30) == os.getpid()  # threads, in this process
        assert "process" in worker.info()["executors"]
