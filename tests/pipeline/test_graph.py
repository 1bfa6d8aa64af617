"""Wiring rules and the build-time errors, with the messages users will read."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.errors import PipelineDefinitionError
from conveyor.pipeline import Pipeline, Stage


def edges(pipe: Pipeline) -> set[tuple[str, str]]:
    return {(e.src, e.dst) for e in pipe.build().edges}


def ident(x: Any) -> Any:
    return x


def test_stages_chain_in_declaration_order() -> None:
    p = Pipeline()
    p.producer(lambda: [1], name="gen")
    p.processor(ident, name="a")
    p.processor(ident, name="b")
    p.consumer(print, name="c")
    assert edges(p) == {("gen", "a"), ("a", "b"), ("b", "c")}


def test_diamond_with_to_flows_into_the_join() -> None:
    p = Pipeline()
    p.producer(lambda: [1], name="gen")
    p.processor(ident, name="split", to=["small", "large"])
    p.processor(ident, name="small")
    p.processor(ident, name="large")
    p.consumer(print, name="join")
    assert edges(p) == {
        ("gen", "split"),
        ("split", "small"),
        ("split", "large"),
        ("small", "join"),
        ("large", "join"),
    }


def test_from_adds_fan_in_and_fan_out() -> None:
    p = Pipeline()
    p.producer(lambda: [1], name="g1")
    p.producer(lambda: [2], name="g2")
    p.processor(ident, name="a")
    p.consumer(print, name="audit", from_=["g1", "g2"])
    assert edges(p) == {("g1", "a"), ("g2", "a"), ("g1", "audit"), ("g2", "audit")}


def test_dead_letter_stage_is_an_edge_and_not_auto_wired() -> None:
    p = Pipeline()
    p.processor(ident, name="work", dead_letter="dlq")
    p.consumer(print, name="dlq")
    g = p.build(source=[1])
    assert {(e.src, e.dst, e.dead_letter) for e in g.edges} == {
        ("source", "work", False),
        ("work", "dlq", True),
    }
    assert g.is_terminal("work")


def test_nested_pipeline_is_one_node_with_dotted_names() -> None:
    inner = Pipeline("clean")
    inner.processor(ident, name="strip")
    inner.processor(ident, name="lower")
    outer = Pipeline()
    outer.producer(lambda: ["A "], name="gen")
    outer.add(inner)
    outer.consumer(print, name="out")
    assert edges(outer) == {
        ("gen", "clean.strip"),
        ("clean.strip", "clean.lower"),
        ("clean.lower", "out"),
    }
    assert outer.build().order == ["gen", "clean.strip", "clean.lower", "out"]
    outer.build()  # building twice must not re-prefix names
    assert "clean.strip" in outer.build().stages


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        (
            lambda p: (p.processor(ident, name="a", to="b"), p.processor(ident, name="b", to="a")),
            r"cycle: a -> b -> a",
        ),
        (
            lambda p: p.processor(ident, name="a", to="nope"),
            r"unknown stage 'nope'; stages at this level: a",
        ),
        (
            lambda p: (p.processor(ident, name="a"), p.processor(ident, name="a")),
            r"duplicate stage name 'a'",
        ),
        (
            lambda p: (
                p.processor(ident, name="a", to="c"),
                p.processor(ident, name="b"),
                p.consumer(print, name="c"),
            ),
            r"processor 'b' receives nothing",
        ),
        (
            lambda p: (p.producer(lambda: [], name="g"), p.processor(ident, name="a", to="g")),
            r"producer 'g' cannot receive items",
        ),
        (
            lambda p: p.processor(ident, name="a", threads=2, processes=2),
            r"several execution strategies",
        ),
        (lambda p: p.processor(ident, name="a", queue_size=0), r"channels are always bounded"),
        (lambda p: p.processor(ident, name="a", qeue_size=3), r"unknown option\(s\) qeue_size"),
        (lambda p: p.processor(ident, name="a", context="cpu"), r"unknown execution context"),
        (lambda p: p.consumer(print, name="c", to="x"), r"consumer 'c' sends nothing on"),
        (lambda p: p.processor(lambda a, b: a, name="two"), r"one positional parameter"),
        (lambda p: p.processor(ident, name="t", timeout=1.0), r"a thread cannot be interrupted"),
        (lambda p: p.add(Stage("custom"), processes=2), r"only function stages can run"),
        (lambda p: p.batch(10, threads=2), r"it runs a single worker"),
        (lambda p: p.processor(ident, name="bad", on_error="ignore"), r"on_error must be"),
    ],
)
def test_build_errors_say_what_is_wrong(declare: Any, message: str) -> None:
    p = Pipeline()
    with pytest.raises(PipelineDefinitionError, match=message):
        declare(p)
        p.build(source=[1])


def test_async_stage_without_strategy_gets_one_coroutine() -> None:
    p = Pipeline()

    @p.processor
    async def fetch(x: int) -> int:
        return x

    assert p.build(source=[1]).stages["fetch"].strategy.label == "asyncio=1"


def test_context_is_shared_and_resolved() -> None:
    p = Pipeline()
    p.context("io", threads=6)
    p.processor(ident, name="a", context="io")
    p.processor(ident, name="b", context="io")
    g = p.build(source=[1])
    assert g.stages["a"].strategy.label == "threads=6 @io"
    assert g.stages["b"].strategy.context == "io"
