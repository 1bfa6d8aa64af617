"""``conveyor pipeline run|graph TARGET`` through typer's runner, on a module written here."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from conveyor.pipeline.cli import pipeline_app

MODULE = """
from conveyor.pipeline import Pipeline

pipe = Pipeline("cli_demo")

@pipe.producer
def numbers():
    yield from range(10)

pipe.processor(lambda x: x * 2, name="double")

def make():
    p = Pipeline("made")
    p.producer(lambda: range(3), name="gen")
    p.processor(lambda x: 1 // x, name="invert")
    return p

broken = Pipeline("broken")
broken.processor(lambda x: x, name="a", to="nowhere")
not_a_pipe = 42
"""


@pytest.fixture
def target_module(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "cli_pipes.py").write_text(textwrap.dedent(MODULE))
    sys.path.insert(0, str(tmp_path))
    try:
        yield "cli_pipes"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("cli_pipes", None)


def test_run_prints_stats_json(target_module: str) -> None:
    result = CliRunner().invoke(pipeline_app, ["run", f"{target_module}:pipe", "--json"])
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.output)
    assert data["name"] == "cli_demo" and data["state"] == "done"
    assert {s["name"]: s["items_in"] for s in data["stages"]}["double"] == 10


def test_run_prints_the_frame(target_module: str) -> None:
    result = CliRunner().invoke(pipeline_app, ["run", f"{target_module}:pipe"])
    assert result.exit_code == 0
    assert "queues (per edge)" in result.output and "numbers → double" in result.output


def test_failed_run_exits_1_with_the_stage(target_module: str) -> None:
    result = CliRunner().invoke(pipeline_app, ["run", f"{target_module}:make"])
    assert result.exit_code == 1
    assert "stage 'invert' failed: ZeroDivisionError" in result.output


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("cli_pipes:broken", "unknown stage 'nowhere'"),
        ("cli_pipes:not_a_pipe", "is a int, not a conveyor.pipeline.Pipeline"),
        ("cli_pipes:missing", "has no attribute 'missing'"),
        ("cli_pipes", "must look like 'package.module:pipe'"),
        ("no_such_module_xyz:pipe", "cannot import 'no_such_module_xyz'"),
    ],
)
def test_bad_targets_say_what_is_wrong(target_module: str, target: str, message: str) -> None:
    result = CliRunner().invoke(pipeline_app, ["run", target])
    assert result.exit_code == 1
    assert message in result.output.replace("\n", "")


def test_graph_draws_without_running(target_module: str) -> None:
    result = CliRunner().invoke(pipeline_app, ["graph", f"{target_module}:pipe"])
    assert result.exit_code == 0
    assert result.output.index("numbers") < result.output.index("double")
    assert "[processor, inline]" in result.output
