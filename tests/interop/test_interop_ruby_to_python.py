"""Direction 1: Ruby enqueues (Sidekiq client, perform_*, bulk, ActiveJob), Conveyor runs.

Every job is pushed by the real Ruby code in ``ruby/driver.rb``; the Python handlers record what
they got and the tests compare it with what Ruby sent.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from interop_helpers import CORNER_ARGS, same_values, wait_until

from conveyor import App, activejob, current_job
from conveyor.activejob import GlobalID, Symbol

pytestmark = pytest.mark.interop

def register_hard_work(app: App, recorder: Any) -> None:
    @app.job(name="HardWorkJob", queue="py")
    def hard_work(*args: Any) -> None:
        recorder.add({"jid": current_job().jid, "args": list(args), "at": time.time()})


def test_client_push_perform_async_and_push_bulk_reach_python(
        app: App, ruby: Any, conveyor: Any, recorder: Any) -> None:
    register_hard_work(app, recorder)
    conveyor(app, ["py"])
    pushed = ruby("push", {"class": "HardWorkJob", "queue": "py", "args": CORNER_ARGS})
    asynced = ruby("perform_async", {"class": "HardWorkJob", "args": CORNER_ARGS})
    bulk = ruby("push_bulk", {"class": "HardWorkJob", "queue": "py",
                              "args": [[1, "a"], [2, {"b": [None]}], [3, 2**65]]})
    got = {r["jid"]: r["args"] for r in recorder.wait(5)}
    assert set(got) == {pushed, asynced, *bulk}
    assert same_values(got[pushed], CORNER_ARGS)
    assert same_values(got[asynced], CORNER_ARGS)
    assert [got[j] for j in bulk] == [[1, "a"], [2, {"b": [None]}], [3, 2**65]]


def test_perform_in_and_perform_at_run_when_due(app: App, ruby: Any, conveyor: Any,
                                                recorder: Any) -> None:
    register_hard_work(app, recorder)
    conveyor(app, ["py"])
    start = time.time()
    later = ruby("perform_in", {"class": "HardWorkJob", "seconds": 1.5, "args": ["in"]})
    at = ruby("perform_at", {"class": "HardWorkJob", "at": start + 2.0, "args": ["at"]})
    runs = {r["jid"]: r for r in recorder.wait(2)}
    assert runs[later]["args"] == ["in"] and runs[later]["at"] >= start + 1.5
    assert runs[at]["args"] == ["at"] and runs[at]["at"] >= start + 2.0


def register_py_aj(app: App, recorder: Any) -> None:
    @activejob.job(app, "PyAjJob", queue="py")
    def py_aj(*args: Any, **kwargs: Any) -> None:
        data = activejob.current_job_data()
        recorder.add({"wrapper": current_job().payload["class"], "job_id": data["job_id"],
                      "args": list(args), "kwargs": kwargs, "at": time.time()})


def check_all_types(args: list[Any], kwargs: dict[str, Any]) -> None:
    """What ``all_types_arguments`` in driver.rb becomes in Python (docs/sidekiq.md table)."""
    berlin = timezone(timedelta(hours=1))
    expected = [
        "s", 1, 2.5, None, True,
        Symbol("sym"),
        {"a": 1, "b": 2},
        {"x": 1},
        datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
        datetime(2026, 11, 22, 5, 15, 25, tzinfo=berlin),
        datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
        date(2024, 1, 2),
        timedelta(minutes=5),
        "0.15e1",  # Rails 6.1 sends BigDecimal as its to_s
        GlobalID("gid://interop/Model/42"),
        [Symbol("nested"), {"deep": [1, {"z": Symbol("zz")}]}],
    ]
    assert args == expected
    assert [type(a) for a in args] == [type(e) for e in expected]
    assert args[9].utcoffset() == timedelta(hours=1)
    assert [type(k) for k in args[6]] == [Symbol, str]  # :a was a Symbol key, "b" a String
    assert args[14].model_name == "Model" and args[14].model_id == "42"
    assert kwargs == {"kw1": "v", "when": date(2030, 5, 6)}


def test_activejob_perform_later_set_wait_and_both_wrappers(
        app: App, ruby: Any, conveyor: Any, recorder: Any) -> None:
    register_py_aj(app, recorder)
    conveyor(app, ["py"])
    start = time.time()
    now = ruby("aj_all_types", {"class": "PyAjJob"})
    waited = ruby("aj_all_types", {"class": "PyAjJob", "wait": 1.5})
    eight = ruby("aj_wrapper8", {"class": "PyAjJob"})
    runs = recorder.wait(3)
    assert sorted(r["wrapper"] for r in runs) == sorted([
        activejob.RAILS_WRAPPER, activejob.RAILS_WRAPPER, activejob.SIDEKIQ8_WRAPPER])
    by_id = {r["job_id"]: r for r in runs}
    assert by_id[waited["job_id"]]["at"] >= start + 1.5
    assert now["job_id"] in by_id and len(eight) == 24
    for run in runs:
        check_all_types(run["args"], run["kwargs"])


def test_activejob_class_without_handler_is_dead_with_reason(
        app: App, ruby: Any, conveyor: Any, redis_sync: Any) -> None:
    register_py_aj(app, type("R", (), {"add": lambda self, x: None})())
    conveyor(app, ["py"])
    ruby("push", {"class": activejob.RAILS_WRAPPER, "wrapped": "NoSuchJob", "queue": "py",
                  "args": [{"job_class": "NoSuchJob", "arguments": [1]}]})
    dead = wait_until(lambda: redis_sync.zrange("dead", 0, -1), what="the dead entry")
    entry = json.loads(dead[0])
    assert entry["error_class"] == "UnknownJobType"
    assert "'NoSuchJob' is not registered" in entry["error_message"]
    assert entry["args"] == [{"job_class": "NoSuchJob", "arguments": [1]}]
