"""One contract, every executor: the same tests against asyncio, thread, process, fork, and http
with a Python sidecar and a Ruby sidecar (real processes and real servers, started here).

What differs between executors lives in the small ``Flavor`` adapter below: the job functions
(coroutines for asyncio), the names of errors in the job's language, whether the executor
isolates crashes (asyncio and thread run job code in the worker's own process, so ``os._exit``
or a segfault there would end the worker: documented, and not tested here), and how long a
"long" job may run (a thread cannot be killed, so the thread executor's long jobs are short).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from conveyor.errors import Cancelled, JobTimeout, WorkerLost
from conveyor.executors import Executor, Task

from . import jobs, sidecars
from .helpers import Ctx, max_overlap, pid_alive, until

TIMEOUT_S = 0.5
SLOW_S = 0.3


@dataclass
class Flavor:
    name: str
    executor: str
    functions: dict[str, Any] = field(default_factory=lambda: jobs.FUNCTIONS)
    isolating: bool = True
    errors: dict[str, str] = field(default_factory=lambda: {"Boom": "ValueError",
                                                            "Hog": "MemoryError"})
    source: str = "jobs.py"
    long_s: float = 30.0
    command: Callable[[], list[str]] | None = None
    kills_child: bool = False


RUBY_ERRORS = {"Boom": "ArgumentError", "Hog": "NoMemoryError"}
FLAVORS = [
    Flavor("asyncio", "asyncio", jobs.ASYNC_FUNCTIONS, isolating=False),
    Flavor("thread", "thread", isolating=False, long_s=1.5),
    Flavor("process", "process", kills_child=True),
    Flavor("fork", "fork", kills_child=True),
    Flavor("http-python", "http", command=sidecars.python_command),
    Flavor("http-ruby", "http", errors=RUBY_ERRORS, source="ruby_jobs.rb",
           command=sidecars.ruby_command),
]


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, sidecars.SidecarServer]]:
    """Sidecars shared by the module's tests, started on first use, stopped at the end."""
    started: dict[str, sidecars.SidecarServer] = {}
    yield started
    for server in started.values():
        server.stop()


@pytest.fixture(params=FLAVORS, ids=[f.name for f in FLAVORS])
def flavor(request: pytest.FixtureRequest) -> Flavor:
    flavor: Flavor = request.param
    if flavor.name == "http-ruby":
        sidecars.require_ruby()
    return flavor


@pytest.fixture
def build(flavor, make_executor, servers):
    """``await build(capacity)``: the flavor's executor, on a shared sidecar for http."""

    async def build(capacity: int = 4) -> Executor:
        options: dict[str, Any] = {}
        if flavor.command is not None:
            if flavor.name not in servers:
                port = sidecars.free_port()
                servers[flavor.name] = sidecars.SidecarServer.start(flavor.command(port), port)
            options["url"] = servers[flavor.name].url
        return await make_executor(flavor.executor, flavor.functions, capacity, **options)

    return build


@pytest.fixture
def build_own(flavor, make_executor):
    """An executor whose sidecar (for http) is its own, launched and supervised by it."""

    async def build(capacity: int = 2) -> Executor:
        options: dict[str, Any] = {}
        if flavor.command is not None:
            options = {"command": flavor.command(), "env": sidecars.SIDECAR_ENV}
        return await make_executor(flavor.executor, flavor.functions, capacity, **options)

    return build


def job(name: str, *args: Any, timeout: float | None = None, jid: str = "",
        **kwargs: Any) -> Task:
    jid = jid or f"{name}-{time.monotonic_ns()}"
    return Task(name, list(args), kwargs, timeout, key=jid, context=Ctx(jid, name))


async def test_success_returns_the_value(build):
    ex = await build()
    outcome = await ex.run(job("Echo", 1, "two", {"three": [3.5, None, True]}))
    assert outcome.ok, outcome.message
    assert outcome.value == [1, "two", {"three": [3.5, None, True]}]
    with_kwargs = await ex.run(job("Echo", 1, key="word"))
    assert with_kwargs.value == [[1], {"key": "word"}]


async def test_an_exception_comes_back_with_class_message_and_backtrace(build, flavor):
    ex = await build()
    outcome = await ex.run(job("Boom", "bad input"))
    assert not outcome.ok
    assert outcome.error_class == flavor.errors["Boom"]
    assert outcome.message == "bad input"
    assert flavor.source in outcome.backtrace[-1], outcome.backtrace


async def test_an_unknown_job_type_fails_with_the_registered_names(build):
    ex = await build()
    outcome = await ex.run(job("Nope"))
    assert outcome.error_class == "UnknownJobType"
    assert "'Nope'" in outcome.message or '"Nope"' in outcome.message
    assert "Echo" in outcome.message


async def test_a_timeout_fails_the_job_promptly(build, flavor, tmp_path):
    ex = await build()
    marker = tmp_path / "started"
    began = time.monotonic()
    outcome = await ex.run(job("Sleeper", flavor.long_s, str(marker), timeout=TIMEOUT_S))
    assert isinstance(outcome.error, JobTimeout), outcome
    assert time.monotonic() - began < TIMEOUT_S + 3
    if flavor.kills_child:
        await until(lambda: not pid_alive(int(marker.read_text())), what="the child to die")
    assert (await ex.run(job("Echo", "next"))).value == ["next"]


async def test_cancelling_a_running_job(build, flavor, tmp_path):
    ex = await build()
    marker = tmp_path / "started"
    task = job("Sleeper", flavor.long_s, str(marker))
    running = asyncio.ensure_future(ex.run(task))
    await until(marker.exists, what="the job to start")
    task.context.cancelled = True  # what the worker does before calling cancel()
    assert ex.cancel(task.key)
    outcome = await running
    assert isinstance(outcome.error, Cancelled), outcome
    if flavor.kills_child:
        await until(lambda: not pid_alive(int(marker.read_text())), what="the child to die")
    assert not ex.cancel("no-such-job")
    assert (await ex.run(job("Echo", "next"))).ok


@pytest.mark.parametrize("crash", ["Exit", "Segfault"])
@pytest.mark.parametrize("flavor", [f for f in FLAVORS if f.isolating], indirect=True,
                         ids=[f.name for f in FLAVORS if f.isolating])
async def test_a_crash_fails_only_that_job(build_own, flavor, crash):
    ex = await build_own()
    outcome = await ex.run(job(crash, 3) if crash == "Exit" else job(crash))
    assert isinstance(outcome.error, WorkerLost), outcome
    if flavor.kills_child:
        expected = "exited with code 3" if crash == "Exit" else "signal 11 (SIGSEGV)"
        assert expected in outcome.message
    if flavor.command is not None:  # the sidecar died with the job: wait for its restart
        await until(lambda: ex.stats().restarts == 1 and ex.supervisor.healthy,
                    timeout_s=30, what="the sidecar to be restarted")
    after = await asyncio.gather(*(ex.run(job("Echo", i)) for i in range(4)))
    assert [o.value for o in after] == [[0], [1], [2], [3]]


async def test_a_memory_error_fails_only_that_job(build, flavor):
    ex = await build()
    outcome = await ex.run(job("Hog"))
    assert outcome.error_class == flavor.errors["Hog"]
    assert (await ex.run(job("Echo", "still here"))).ok


async def test_the_concurrency_limit_is_respected(build):
    ex = await build(capacity=2)
    outcomes = await asyncio.gather(*(ex.run(job("Interval", SLOW_S)) for _ in range(6)))
    assert all(o.ok for o in outcomes), [o.message for o in outcomes if not o.ok]
    assert max_overlap([o.value for o in outcomes]) == 2
    assert max(o.queued_s for o in outcomes) >= SLOW_S * 0.9  # the last pair waited its turn


async def test_stats_count_what_happened(build, flavor):
    ex = await build(capacity=3)
    await asyncio.gather(*(ex.run(job("Echo", i)) for i in range(3)),
                         ex.run(job("Boom", "x")), ex.run(job("Nope")))
    stats = ex.stats()
    assert (stats.kind, stats.capacity) == (flavor.executor, 3)
    assert (stats.completed, stats.failed, stats.in_flight) == (3, 2, 0)
    assert stats.restarts == 0 and stats.queued_s_total >= 0
    assert stats.as_dict()["completed"] == 3
