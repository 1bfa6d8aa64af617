"""Property tests: any chain of stages, on any strategies and queue sizes, computes what the
built-in ``map``/``filter``/``itertools`` chain computes: the same multiset, and with
``ordered=True`` the same sequence."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
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


@pytest.mark.slow
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=st.lists(st.integers(-50, 50), max_size=60),
    chain=st.lists(ops.filter(lambda op: op[0] != "batch"), min_size=1, max_size=2),
    ordered=st.booleans(),
)
def test_process_stages_equal_builtins(items: list[int], chain: list[Op], ordered: bool) -> None:
    strategies = [{"processes": 2}, {"forks": 2}]
    result = build(chain, strategies, [3, 3], ordered=ordered).run(items, collect=True)
    expected = model(items, chain)
    if ordered:
        assert result.outputs == expected
    else:
        assert Counter(result.outputs) == Counter(expected)
