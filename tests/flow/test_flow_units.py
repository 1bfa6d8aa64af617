"""Pure pieces of flow control: rate limit text, key templates, policies and their run-time
overrides, option checks at ``@app.job`` time."""

from __future__ import annotations

import pytest

from conveyor import App
from conveyor.errors import ConfigurationError
from conveyor.flow import Breaker, ConcurrencyLimit, KeyTemplateError, RateLimit, Unique
from conveyor.flow.keytemplate import KeyTemplate
from conveyor.flow.policy import FlowPolicy, normalize_override
from conveyor.flow.unique import args_digest, resolve


@pytest.mark.parametrize(("text", "expected"), [
    ("10/s", RateLimit(10, 1.0)),
    ("100/m", RateLimit(100, 60.0)),
    ("5/2s", RateLimit(5, 2.0)),
    ("2/0.5s", RateLimit(2, 0.5)),
    ("1000/h bucket", RateLimit(1000, 3600.0, algorithm="bucket")),
    ("10/s bucket 30", RateLimit(10, 1.0, algorithm="bucket", burst=30)),
    (" 7 / min window ", RateLimit(7, 60.0)),
])
def test_rate_limit_text(text: str, expected: RateLimit) -> None:
    assert RateLimit.parse(text) == expected


@pytest.mark.parametrize("text", ["10", "10/q", "0/s", "ten/s", "10/s leaky", "10/0s"])
def test_bad_rate_limit_text_says_how_to_write_it(text: str) -> None:
    with pytest.raises(ConfigurationError, match="rate limit"):
        RateLimit.parse(text)


def test_key_templates() -> None:
    def fn(tenant_id: int, order: dict, *, region: str = "eu") -> None: ...

    def render(text: str, *args: object, **kwargs: object) -> str:
        return KeyTemplate(text).render("T", "q", args, kwargs, fn)

    assert render("tenant:{args.tenant_id}", 7, {}) == "tenant:7"
    assert render("tenant:{args.tenant_id}", tenant_id=7, order={}) == "tenant:7"
    assert render("{class}/{queue}/{args[1].id}", 1, {"id": "x"}) == "T/q/x"
    assert render("{kwargs.region}", 1, {}, region="us") == "us"
    assert render("{args[1].items[-1]}", 1, {"items": [1, 2]}) == "2"
    assert KeyTemplate("fixed").is_static and not KeyTemplate("{args[0]}").is_static
    with pytest.raises(KeyTemplateError, match=r"no \{args.nope\}"):
        render("{args.nope}", 1, {})
    with pytest.raises(KeyTemplateError, match="must start with"):
        KeyTemplate("{body.x}")
    with pytest.raises(KeyTemplateError, match="cannot read"):
        KeyTemplate("{args..x}")


def test_policies_from_options_and_run_time_overrides() -> None:
    declared = FlowPolicy.from_options({"rate_limit": ["100/s", RateLimit(5, key="t:{args[0]}")],
                                        "concurrency_limit": 3,
                                        "breaker": Breaker(failures=2, trip_on=(OSError,))})
    assert declared.describe() == ["rate 100/1s window", "rate 5/1s window",
                                   "concurrency 3 at once",
                                   "breaker opens after 2 in a row; open 30s"]
    changed = declared.override({"rate_limit": None, "breaker": {"failures": 9}})
    assert changed.rate_limits == () and changed.concurrency_limits == (ConcurrencyLimit(3),)
    assert changed.breaker is not None and changed.breaker.failures == 9
    assert changed.breaker.trip_on == (OSError,)  # code-only settings survive an override
    assert FlowPolicy.from_options({"queue": "x"}).empty
    assert normalize_override({"concurrency_limit": 2}) == {
        "concurrency_limit": [{"limit": 2, "key": None, "recheck_s": 1.0, "poll_s": 0.1}]}
    with pytest.raises(ConfigurationError, match="unknown flow option"):
        normalize_override({"rate": "1/s"})


def test_job_options_are_checked_when_declared() -> None:
    app = App(redis_url="redis://unused")
    for bad in ({"rate_limit": "fast"}, {"concurrency_limit": 0},
                {"breaker": {"failures": 0}}, {"unique": {"scope": "ever"}},
                {"rate_limit": {"limit": 1, "key": "{oops}"}}):
        with pytest.raises(ConfigurationError):
            app.job(name="x", **bad)(lambda: None)
    assert "x" not in app.registry


def test_unique_keys() -> None:
    assert resolve("T", "q", [1], {}, None, None, None, None, None) is None
    assert resolve("T", "q", [1], {}, None, None, "k", None, None) == ("k", 3600, "running")
    assert resolve("T", "q", [1], {}, None, True, None, None, "queued") == (
        args_digest("T", [1], {}), 3600, "queued")
    assert args_digest("T", [1], {"a": 1, "b": 2}) == args_digest("T", [1], {"b": 2, "a": 1})
    assert resolve("T", "q", [5], {}, None, Unique(key="u:{args[0]}", ttl_s=60), None, None,
                   None) == ("u:5", 60, "running")
    with pytest.raises(ConfigurationError, match="need a unique_key"):
        resolve("T", "q", [], {}, None, None, None, 10, None)
