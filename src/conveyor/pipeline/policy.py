"""What a stage does when an item fails: raise (default), skip, retry with backoff, dead-letter.

``on_error`` takes ``"raise"``, ``"skip"`` or ``retry(n, backoff=...)``; ``dead_letter=`` names a
stage (it receives a record dict) or a callable ``fn(item, error)``. The decision is a pure
function of the attempt number, so every driver (threads, asyncio, process pools, the
deterministic runner) applies the same rules and only differs in how it waits and re-runs.

Order of decisions for a failed item: retry while attempts remain; then send it to the dead
letter if one is set; otherwise skip it (counted) or raise (the run stops and ``run()`` raises
``StageFailed``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import PipelineDefinitionError

MAX_BACKOFF_S = 60.0


class Action(enum.Enum):
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"
    SKIP = "skip"
    RAISE = "raise"


@dataclass(frozen=True)
class ErrorPolicy:
    """A stage's error handling: ``retries`` re-runs with exponential backoff, then ``then``."""

    then: str = "raise"  # raise | skip
    retries: int = 0
    backoff_s: float = 0.0
    factor: float = 2.0
    max_backoff_s: float = MAX_BACKOFF_S

    def decide(self, attempt: int, has_dead_letter: bool) -> tuple[Action, float]:
        """After failed attempt number ``attempt`` (1-based): what to do, and the delay first."""
        if attempt <= self.retries:
            delay = min(self.max_backoff_s, self.backoff_s * self.factor ** (attempt - 1))
            return Action.RETRY, delay
        if has_dead_letter:
            return Action.DEAD_LETTER, 0.0
        return (Action.SKIP if self.then == "skip" else Action.RAISE), 0.0

    @property
    def label(self) -> str:
        if not self.retries:
            return self.then
        return f"retry({self.retries}, backoff={self.backoff_s}) then {self.then}"


def retry(
    times: int,
    backoff: float = 0.0,
    *,
    factor: float = 2.0,
    max_backoff: float = MAX_BACKOFF_S,
    then: str = "raise",
) -> ErrorPolicy:
    """Re-run a failed item up to ``times`` more times, waiting ``backoff * factor**k`` seconds
    before retry ``k`` (capped at ``max_backoff``); then ``then`` ("raise" or "skip")."""
    if times < 0:
        raise ValueError(f"retry(times) must be 0 or more, got {times}")
    if then not in ("raise", "skip"):
        raise ValueError(f"retry(then=) must be 'raise' or 'skip', got {then!r}")
    return ErrorPolicy(then, times, backoff, factor, max_backoff)


def parse_policy(stage: str, on_error: Any) -> ErrorPolicy:
    if isinstance(on_error, ErrorPolicy):
        return on_error
    if on_error in ("raise", "skip"):
        return ErrorPolicy(on_error)
    raise PipelineDefinitionError(
        f"stage {stage!r}: on_error must be 'raise', 'skip' or retry(n, backoff=...), "
        f"got {on_error!r}"
    )


def dead_letter_record(
    stage: str, item: Any, error: BaseException, attempts: int
) -> dict[str, Any]:
    """What a dead-letter stage receives for a failed item."""
    error_class = getattr(error, "error_class", None) or type(error).__name__
    return {
        "stage": stage,
        "item": item,
        "error_class": error_class,
        "message": str(error),
        "attempts": attempts,
    }


DeadLetterFn = Callable[[Any, BaseException], None]
