"""Hooks run exactly once where documented, in the documented order."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from conveyor.errors import StageFailed
from conveyor.pipeline import Pipeline


def test_run_and_stage_hooks_run_once_in_order() -> None:
    calls: list[str] = []
    pipe = Pipeline()
    pipe.before_run(lambda: calls.append("before_run"))
    pipe.after_run(lambda: calls.append("after_run"))
    pipe.producer(lambda: range(5), name="gen")
    pipe.processor(lambda x: x, name="work", threads=3, before=lambda: calls.append("before work"))
    pipe.consumer(lambda x: None, name="sink")
    pipe.before("gen")(lambda: calls.append("before gen"))
    pipe.after("work")(lambda: calls.append("after work"))
    pipe.after("sink")(lambda: calls.append("after sink"))
    pipe.run()
    assert calls[0] == "before_run" and calls[-1] == "after_run"
    assert sorted(calls[1:3]) == ["before gen", "before work"]
    # after hooks follow the flow: a stage's after hook runs before the stages below it end
    assert calls[3:5] == ["after work", "after sink"]
    assert len(calls) == 6


def test_after_run_runs_once_when_the_run_fails() -> None:
    calls: list[str] = []
    pipe = Pipeline()
    pipe.after_run(lambda: calls.append("after_run"))
    pipe.processor(lambda x: 1 / 0, name="bad")
    pipe.after("bad")(lambda: calls.append("after bad"))
    with pytest.raises(StageFailed):
        pipe.run([1])
    assert calls == ["after_run"]  # a failed stage did not finish, so its after hook is skipped


def test_failing_before_hook_fails_the_run_naming_the_stage() -> None:
    pipe = Pipeline()
    pipe.processor(lambda x: x, name="work", before=lambda: 1 / 0)
    with pytest.raises(StageFailed) as info:
        pipe.run([1, 2])
    assert info.value.stage == "work"


@pytest.mark.parametrize("strategy", [{"processes": 2}, {"forks": 2}], ids=["processes", "forks"])
def test_fork_hooks(strategy: dict[str, Any], tmp_path: Path) -> None:
    """before_fork once in this process; after_fork once in every worker process."""
    before: list[int] = []
    pipe = Pipeline()
    pipe.before_fork(lambda: before.append(os.getpid()))

    def mark() -> None:
        with open(tmp_path / f"{os.getpid()}", "a") as f:
            f.write("x")

    pipe.after_fork(mark)
    pipe.processor(lambda x: os.getpid(), name="where", chunk_size=1, **strategy)
    pids = set(pipe.run(range(12), collect=True).outputs)
    assert before == [os.getpid()]
    marks = {int(p.name): p.read_text() for p in tmp_path.iterdir()}
    assert set(marks) == pids
    assert all(text == "x" for text in marks.values())


def test_forks_share_init_state_from_the_zygote(tmp_path: Path) -> None:
    """forks: init runs once, in the zygote, and every forked child sees its result."""
    inits = tmp_path / "inits"

    def init() -> dict[str, int]:
        with open(inits, "a") as f:
            f.write(f"{os.getpid()}\n")
        return {"table": 42}

    pipe = Pipeline()
    pipe.processor(
        lambda x, state: [state["table"], os.getpid()], name="f", forks=2, init=init, chunk_size=1
    )
    result = pipe.run(range(6), collect=True)
    assert {v for v, _ in result.outputs} == {42}
    assert len(inits.read_text().split()) == 1
    assert int(inits.read_text()) not in {pid for _, pid in result.outputs}


def test_deterministic_mode_runs_every_hook_once() -> None:
    calls: list[str] = []
    pipe = Pipeline()
    for name in ("before_run", "after_run", "before_fork", "after_fork"):
        getattr(pipe, name)(lambda name=name: calls.append(name))
    pipe.processor(lambda x: x, name="p", processes=2)
    pipe.run([1, 2], deterministic=True)
    assert sorted(calls) == ["after_fork", "after_run", "before_fork", "before_run"]
