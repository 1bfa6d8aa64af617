"""Property tests: any chain of stages, on any strategies and queue sizes, computes what the
built-in ``map``/``filter``/``itertools`` chain computes: the same multiset, and with
``ordered=True`` the same sequence.

The fast tests draw in-process strategies only. ``test_any_strategy_equals_builtins`` (slow)
draws from all of inline, threads, asyncio, processes, forks and named process/fork contexts,
with at least one function stage on processes or forks. Its stage functions are closures like
the others: process and fork workers inherit the stage function table when their pool forks,
so nothing is pickled (``pool.py``). A pool lives as long as its run (the engine keeps no pool
across runs that examples could reuse), so that test keeps its example count low, and stages
drawing a named context share one pool within the run.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conveyor.pipeline import Pipeline

Op = tuple[str, int]

ops = st.one_of(
    st.tuples(st.just("map"), st.integers(-3, 3)),
    st.tuples(st.just("filter"), st.integers(2, 4)),
    st.tuples(st.just("flat"), st.integers(0, 2)),
    st.tuples(st.just("batch"), st.integers(1, 4)),
)
in_process = st.one_of(
    st.just({}),
    st.builds(lambda n: {"threads": n}, st.integers(1, 4)),
    st.builds(lambda n: {"asyncio": n}, st.integers(1, 3)),
)
# Every strategy, drawn by name with equal weight (st.one_of would favour its first branch).
STRATEGY_NAMES = ("inline", "threads", "asyncio", "processes", "forks", "ctx-cpu", "ctx-zygote")
OUT_OF_PROCESS_NAMES = ("processes", "forks", "ctx-cpu", "ctx-zygote")
# Stages drawing "ctx-cpu" share one processes=2 pool per run, "ctx-zygote" one forks=2 pool.
CONTEXTS: dict[str, dict[str, int]] = {"cpu": {"processes": 2}, "zygote": {"forks": 2}}


def strategy_options(name: str, size: int) -> dict[str, Any]:
    if name == "inline":
        return {}
    if name.startswith("ctx-"):
        return {"context": name[4:]}
    return {name: size}


queue_sizes = st.integers(1, 5)


def model(items: list[int], chain: list[Op]) -> list[int]:
    """The same computation with the built-ins."""
    out: Iterable[int] = items
    for kind, k in chain:
        if kind == "map":
            out = map(lambda x, k=k: x * k + 1, out)
        elif kind == "filter":
            out = filter(lambda x, k=k: x % k != 0, out)
        elif kind == "flat":
            out = itertools.chain.from_iterable(map(lambda x, k=k: [x] * k, out))
    return list(out)


def sync_fn(kind: str, k: int) -> Callable[..., Any]:
    if kind == "map":
        return lambda x: x * k + 1
    if kind == "filter":

        def sfilter(x: int) -> Any:
            if x % k != 0:
                yield x

        return sfilter

    def sflat(x: int, emit: Any) -> None:  # the emit= form, for variety
        for _ in range(k):
            emit(x)

    return sflat


def async_fn(kind: str, k: int) -> Callable[..., Any]:
    if kind == "map":

        async def amap(x: int) -> int:
            return x * k + 1

        return amap

    async def agen(x: int) -> Any:
        if kind == "filter":
            if x % k != 0:
                yield x
        else:
            for _ in range(k):
                yield x

    return agen


def stage_fn(kind: str, k: int, is_async: bool) -> Callable[..., Any]:
    return async_fn(kind, k) if is_async else sync_fn(kind, k)


def build(
    chain: list[Op], strategies: list[dict[str, Any]], sizes: list[int], ordered: bool
) -> Pipeline:
    pipe = Pipeline("prop")
    for ctx in sorted({s["context"] for s in strategies if "context" in s}):
        pipe.context(ctx, **CONTEXTS[ctx])
    for i, ((kind, k), strategy, size) in enumerate(zip(chain, strategies, sizes, strict=False)):
        if kind == "batch":
            pipe.batch(k, name=f"b{i}", queue_size=size)
            pipe.unbatch(name=f"u{i}", queue_size=size)
            continue
        is_async = "asyncio" in strategy
        options = {**strategy, "queue_size": size, "name": f"s{i}"}
        if ordered:
            options["ordered"] = True
            options["reorder_window"] = size
        pipe.processor(stage_fn(kind, k, is_async), **options)
    return pipe


chains = st.lists(ops, min_size=1, max_size=4)
common = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@common
@given(
    items=st.lists(st.integers(-50, 50), max_size=40),
    chain=chains,
    strategies=st.lists(in_process, min_size=4, max_size=4),
    sizes=st.lists(queue_sizes, min_size=4, max_size=4),
)
def test_multiset_equals_builtins(
    items: list[int], chain: list[Op], strategies: list[dict[str, Any]], sizes: list[int]
) -> None:
    result = build(chain, strategies, sizes, ordered=False).run(items, collect=True)
    assert Counter(result.outputs) == Counter(model(items, chain))


@common
@given(
    items=st.lists(st.integers(-50, 50), max_size=40),
    chain=chains,
    strategies=st.lists(in_process, min_size=4, max_size=4),
    sizes=st.lists(queue_sizes, min_size=4, max_size=4),
)
def test_ordered_sequence_equals_builtins(
    items: list[int], chain: list[Op], strategies: list[dict[str, Any]], sizes: list[int]
) -> None:
    result = build(chain, strategies, sizes, ordered=True).run(items, collect=True)
    assert result.outputs == model(items, chain)


@common
@given(items=st.lists(st.integers(-50, 50), max_size=40), chain=chains)
def test_deterministic_mode_equals_builtins_in_order(items: list[int], chain: list[Op]) -> None:
    strategies = [{"threads": 3}] * 4  # ignored: everything runs in this thread
    result = build(chain, strategies, [1] * 4, ordered=False).run(
        items, collect=True, deterministic=True
    )
    assert result.outputs == model(items, chain)


@st.composite
def mixed_chains(draw: st.DrawFn) -> tuple[list[Op], list[dict[str, Any]], list[str]]:
    """A chain, one strategy per stage, and at least one function stage out of process."""
    chain = draw(chains.filter(lambda c: any(kind != "batch" for kind, _ in c)))
    names = draw(st.lists(st.sampled_from(STRATEGY_NAMES), min_size=4, max_size=4))
    functions = [i for i, (kind, _) in enumerate(chain) if kind != "batch"]
    if not any(names[i] in OUT_OF_PROCESS_NAMES for i in functions):
        names[draw(st.sampled_from(functions))] = draw(st.sampled_from(OUT_OF_PROCESS_NAMES))
    sizes = draw(st.lists(st.integers(1, 3), min_size=4, max_size=4))
    strategies = [strategy_options(n, k) for n, k in zip(names, sizes, strict=True)]
    return chain, strategies, [names[i] for i in functions]


@pytest.mark.slow  # every example starts one to four worker pools (~0.1-0.2 s each here)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=st.lists(st.integers(-50, 50), max_size=60),
    mixed=mixed_chains(),
    sizes=st.lists(queue_sizes, min_size=4, max_size=4),
    ordered=st.booleans(),
)
def test_any_strategy_equals_builtins(
    items: list[int],
    mixed: tuple[list[Op], list[dict[str, Any]], list[str]],
    sizes: list[int],
    ordered: bool,
) -> None:
    """All five strategies mixed at random, processes and forks included."""
    chain, strategies, used = mixed
    for name in sorted(set(used)):  # --hypothesis-show-statistics shows the mix that ran
        event(f"stage on {name}")
    result = build(chain, strategies, sizes, ordered=ordered).run(items, collect=True)
    expected = model(items, chain)
    if ordered:
        assert result.outputs == expected
    else:
        assert Counter(result.outputs) == Counter(expected)
