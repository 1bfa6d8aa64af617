"""The fork executor's own promises: a fresh process per task, shared copy-on-write state."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from conveyor.executors import Task

from . import jobs
from .helpers import pid_alive, until

TABLE_MB = 64


@pytest.fixture
def shared_table():
    jobs.STATE["table"] = bytes(range(256)) * (TABLE_MB * 4096)
    yield jobs.STATE["table"]
    del jobs.STATE["table"]


async def test_each_task_gets_a_fresh_process(make_executor):
    ex = await make_executor("fork", jobs.FUNCTIONS, 2)
    pids = [o.value for o in await asyncio.gather(*(ex.run(Task("Pid")) for _ in range(6)))]
    assert len(set(pids)) == 6
    assert os.getpid() not in pids and ex.zygote_pid not in pids


async def test_init_runs_once_in_the_zygote_and_every_fork_inherits_it(make_executor):
    ex = await make_executor("fork", jobs.FUNCTIONS, 2, init=jobs.init_counter)
    outcomes = [await ex.run(Task("InitState")) for _ in range(3)]
    assert [o.value[0] for o in outcomes] == [1, 1, 1]
    assert jobs.STATE["init_calls"] == 0


async def test_state_is_what_the_worker_had_at_start(make_executor):
    jobs.STATE["greeting"] = "before start"
    try:
        ex = await make_executor("fork", {"Get": lambda: jobs.STATE["greeting"]}, 1)
        jobs.STATE["greeting"] = "after start"
        assert (await ex.run(Task("Get"))).value == "before start"
    finally:
        del jobs.STATE["greeting"]


async def test_a_large_buffer_loaded_before_start_stays_shared(make_executor, shared_table):
    ex = await make_executor("fork", jobs.FUNCTIONS, 1)
    outcome = await ex.run(Task("CowProbe"))
    assert outcome.ok, outcome.message
    mem = outcome.value
    assert mem["checksum"] == sum(shared_table[i] for i in range(0, len(shared_table), 4096))
    assert mem["shared_kb"] > TABLE_MB * 1024 * 0.9  # the table is still shared...
    assert mem["private_kb"] < TABLE_MB * 1024 * 0.5  # ...not copied into the child


async def test_a_killed_zygote_is_forked_again(make_executor):
    ex = await make_executor("fork", jobs.FUNCTIONS, 1)
    old = ex.zygote_pid
    os.kill(old, signal.SIGKILL)
    await until(lambda: not pid_alive(old), what="the zygote to die")
    outcome = await ex.run(Task("Pid"))
    assert outcome.ok, outcome.message
    assert ex.zygote_pid != old and ex.stats().restarts == 1


async def test_no_process_is_left_after_stop(tmp_path):
    from conveyor.executors import create_executor

    ex = create_executor("fork", jobs.FUNCTIONS, 2)
    await ex.start()
    marker = tmp_path / "started"
    running = asyncio.ensure_future(ex.run(Task("Sleeper", [30, str(marker)])))
    await until(marker.exists)
    child = int(marker.read_text())
    await ex.stop(0)
    assert (await running).error_class == "WorkerLost"
    assert not pid_alive(ex.zygote_pid) and not pid_alive(child)
