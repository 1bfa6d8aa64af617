"""Items that leave the process travel as JSON (``conveyor.job.dumps``); nothing is pickled.

Stages with ``processes``, ``forks``, ``interpreters`` or ``distributed`` get their items and
send their outputs as JSON: tuples arrive as lists, dict keys must be strings, NaN is refused and
custom objects must be turned into plain data first. An item that cannot be encoded fails with a
``SerializationError`` naming the stage, handled by that stage's error policy.
"""

from __future__ import annotations

from typing import Any

from ..errors import SerializationError
from ..job import dumps, loads

OUT_OF_PROCESS_KINDS = frozenset({"processes", "forks", "interpreters", "distributed"})


def not_json(stage: str, item: Any, reason: str, what: str = "items") -> SerializationError:
    return SerializationError(
        f"stage {stage!r} runs out of process, so its {what} travel as JSON, but "
        f"{type(item).__name__} {_short(item)} cannot: {reason}; "
        "send plain data (dict with str keys, list, str, int, float, bool, None)"
    )


def round_trip(stage: str, item: Any, what: str = "items") -> Any:
    """``item`` as the other side of the boundary would see it (used by deterministic runs)."""
    try:
        return loads(dumps(item))
    except SerializationError as exc:
        raise not_json(stage, item, str(exc), what) from None


def unencodable(stage: str, items: list[Any]) -> dict[int, SerializationError]:
    """The positions of the items JSON cannot carry, with the error each should fail with."""
    bad: dict[int, SerializationError] = {}
    for i, item in enumerate(items):
        try:
            dumps(item)
        except SerializationError as exc:
            bad[i] = not_json(stage, item, str(exc))
    return bad


def _short(item: Any) -> str:
    text = repr(item)
    return text if len(text) <= 60 else text[:57] + "..."
