"""The ActiveJob codec and the mixed-fleet policy on their own (no Ruby needed).

The real-Ruby round trips are in ``test_interop_ruby_to_python.py`` and
``test_interop_python_to_ruby.py``; these pin the edge cases and the error messages.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from conveyor import activejob
from conveyor.activejob import (
    GlobalID,
    RubyRange,
    Symbol,
    decode_arguments,
    encode_arguments,
    job_data,
    unwrapped_class,
)
from conveyor.errors import ConfigurationError, MalformedJob, SerializationError
from conveyor.interop import UnknownClassPolicy, check_policy

pytestmark = pytest.mark.interop


def test_what_conveyor_encodes_decodes_to_the_same_values() -> None:
    args: list[Any] = [
        Symbol("s"), "s", 1, 2.5, None, True, 2**70,
        {Symbol("a"): [Symbol("b")], "c": {"d": None}},
        datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
        datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
        date(2024, 2, 29), timedelta(seconds=90), timedelta(milliseconds=1500),
        GlobalID("gid://app/User/7"), [[]],
    ]
    kwargs = {"kw": Symbol("v"), "when": date(2030, 1, 1)}
    decoded, decoded_kwargs = decode_arguments(encode_arguments(args, kwargs))
    assert decoded == args and decoded_kwargs == kwargs
    assert [type(x) for x in decoded] == [type(x) for x in args]
    assert [type(k) for k in decoded[7]] == [Symbol, str]


def test_times_carry_nine_digits_and_their_offset_as_rails_writes_them() -> None:
    utc, ist = encode_arguments([
        datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
        datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=5, minutes=30)))])
    assert utc["value"] == "2024-01-02T03:04:05.123456000Z"
    assert ist["value"] == "2024-01-02T03:04:05.000000000+05:30"


def test_a_keywords_hash_that_is_not_last_stays_a_positional_hash() -> None:
    marked = {"k": 1, "_aj_ruby2_keywords": ["k"]}
    args, kwargs = decode_arguments([marked, 2])
    assert args == [{"k": 1}, 2] and kwargs == {}
    assert type(next(iter(args[0]))) is Symbol


def test_rails_7_serializers_decode() -> None:
    s = "ActiveJob::Serializers::"
    args, _ = decode_arguments([
        {"_aj_serialized": s + "BigDecimalSerializer", "value": "1.50"},
        {"_aj_serialized": s + "RangeSerializer", "begin": 1, "end": 5, "exclude_end": True},
        {"_aj_serialized": s + "ModuleSerializer", "value": "Foo::Bar"},
        {"_aj_serialized": s + "TimeWithZoneSerializer", "value": "2024-06-01T12:00:00.0+02:00",
         "time_zone": "Europe/Berlin"},
    ])
    assert str(args[0]) == "1.50" and args[1] == RubyRange(1, 5, True)
    assert args[2] == "Foo::Bar" and str(args[3].tzinfo) == "Europe/Berlin"


def test_custom_serializers_are_refused_until_registered() -> None:
    money = {"_aj_serialized": "MoneySerializer", "cents": 150, "currency": "EUR"}
    with pytest.raises(MalformedJob, match=r"'MoneySerializer'.*register_serializer"):
        decode_arguments([money])
    activejob.register_serializer("MoneySerializer", lambda h: (h["cents"], h["currency"]))
    try:
        assert decode_arguments([money]) == ([(150, "EUR")], {})
    finally:
        del activejob.SERIALIZERS["MoneySerializer"]


@pytest.mark.parametrize(("value", "message"), [
    (datetime(2024, 1, 1), "has no time zone"),
    ({"_aj_symbol_keys": []}, "reserved key '_aj_symbol_keys'"),
    ({1: "x"}, "has key 1"),
    (float("nan"), "no NaN"),
    ({1, 2}, "set, which ActiveJob cannot carry"),
])
def test_values_rails_cannot_take_are_refused_with_the_reason(value: Any, message: str) -> None:
    with pytest.raises(SerializationError, match=message):
        encode_arguments([value])


def test_envelopes_are_recognised_by_both_wrapper_names_and_checked() -> None:
    data = job_data("HelloJob", [1], {"k": 2}, queue="q", priority=3)
    assert set(data) == {"job_class", "job_id", "provider_job_id", "queue_name", "priority",
                         "arguments", "executions", "exception_executions", "locale",
                         "timezone", "enqueued_at"}
    for wrapper in activejob.WRAPPER_CLASSES:
        assert unwrapped_class({"class": wrapper, "args": [data]}) == "HelloJob"
    assert unwrapped_class({"class": "HelloJob", "args": [data]}) is None
    with pytest.raises(MalformedJob, match="exactly one argument"):
        unwrapped_class({"class": activejob.RAILS_WRAPPER, "args": [data, 1]})
    with pytest.raises(MalformedJob, match="no 'job_class'"):
        unwrapped_class({"class": activejob.RAILS_WRAPPER, "args": [{"arguments": []}]})


def test_globalid_parts() -> None:
    gid = GlobalID("gid://shop/Admin::User/42?tenant=eu")
    assert (gid.app, gid.model_name, gid.model_id) == ("shop", "Admin::User", "42")
    assert gid.params == {"tenant": "eu"} and str(gid) == gid.uri


def test_unknown_class_policy_holds_a_queue_for_the_pause_only() -> None:
    now = [100.0]
    policy = UnknownClassPolicy("hand_back", pause_s=1.0, clock=lambda: now[0])
    policy.hold("shared")
    assert policy.available(["a", "shared", "b"]) == ["a", "b"] and policy.held("shared")
    now[0] += 1.0
    assert policy.available(["a", "shared"]) == ["a", "shared"]
    policy.hold("shared")
    policy.release("shared")
    assert not policy.held("shared")
    assert policy.should_hand_back(None, "shared")  # type: ignore[arg-type]  # no Redis needed


def test_unknown_class_policy_names_the_choices() -> None:
    assert check_policy("dead") == "dead"
    with pytest.raises(ConfigurationError, match="one of dead, hand_back; got 'drop'"):
        UnknownClassPolicy("drop")
