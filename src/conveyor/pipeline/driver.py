"""What every stage driver shares: its workers' counters, failure handling and the ending.

A driver runs one stage with its strategy (threads, coroutines, a process pool...). All of them
end the same way: when the last worker has seen end of stream, the stage's ``finish`` runs, then
its ``after`` hooks, then its output channels are closed (which is the end-of-stream signal for
the stages below) and the run is told the stage is done. If the run was cancelled instead,
nothing is flushed or closed: the channels are already aborted.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ChannelClosed
from .channel import Channel
from .emit import Outputs, Target
from .policy import Action, dead_letter_record
from .spec import StageSpec
from .stats import WorkerStats

if TYPE_CHECKING:
    from .run import Run

DeadLetter = Target | Callable[[Any, BaseException], Any] | None


class Driver:
    """Runs one stage. Subclasses start workers and call :meth:`worker_exited` as each ends."""

    uses_pool = False  # True when its work runs in an executor that the run stops first

    def __init__(
        self,
        run: Run,
        spec: StageSpec,
        inbox: Channel | None,
        outputs: Outputs,
        dead_letter: DeadLetter,
    ) -> None:
        self.run = run
        self.spec = spec
        self.name = spec.name
        self.inbox = inbox
        self.outputs = outputs
        self.dead_letter = dead_letter
        self.workers = [WorkerStats() for _ in range(self.worker_count())]
        self.done: asyncio.Future[None] = run.loop.create_future()
        self.finished = False
        self.started = False
        self._alive = len(self.workers)
        self._all_ok = True
        self._exit_lock = threading.Lock()

    def worker_count(self) -> int:
        return self.spec.workers

    async def prepare(self) -> None:
        """Set up before any stage thread starts (process pools fork their zygote here)."""

    def start(self) -> None:
        raise NotImplementedError

    async def stop(self, grace_s: float) -> None:
        """Release resources after the run (stop process pools)."""

    def abort(self) -> None:
        """Wake anything of this driver's own that waits (reorder buffers)."""

    def restarts(self) -> int:
        return 0

    def in_flight(self) -> int:
        return sum(w.current for w in self.workers)

    def notes(self) -> list[str]:
        return []

    # --- failures -----------------------------------------------------------------------------
    def decide(self, attempt: int, ws: WorkerStats) -> tuple[Action, float]:
        """Apply the policy to failed attempt ``attempt`` and count the outcome."""
        action, delay = self.spec.policy.decide(attempt, self.dead_letter is not None)
        if action is Action.RETRY:
            ws.retried += 1
            return action, delay
        ws.failed += 1
        if action is Action.DEAD_LETTER:
            ws.dead_lettered += 1
        elif action is Action.SKIP:
            ws.skipped += 1
        return action, delay

    def send_dead_letter(self, item: Any, error: BaseException, attempts: int) -> None:
        target = self.dead_letter
        if isinstance(target, Channel):
            target.put(dead_letter_record(self.name, item, error, attempts))
        elif callable(target):
            target(item, error)

    async def asend_dead_letter(self, item: Any, error: BaseException, attempts: int) -> None:
        target = self.dead_letter
        if isinstance(target, Channel):
            await target.aput(dead_letter_record(self.name, item, error, attempts))
        elif callable(target):
            target(item, error)

    # --- the ending ---------------------------------------------------------------------------
    def worker_exited(self, ok: bool) -> bool:
        """Count a worker out; True for the last one (which must then call :meth:`close`)."""
        with self._exit_lock:
            self._alive -= 1
            self._all_ok = self._all_ok and ok
            return self._alive == 0

    @property
    def should_finish(self) -> bool:
        return self._all_ok and not self.run.failed

    def close(self) -> None:
        """After finish: run the after hooks and signal end of stream downstream."""
        for hook in self.spec.after:
            hook()
        self.outputs.close()
        if (
            isinstance(self.dead_letter, Channel)
            and self.dead_letter not in self.outputs.named.values()
        ):
            self.dead_letter.close()

    def mark_done(self) -> None:
        self.finished = True
        self.run.call_in_loop(_resolve, self.done)

    def fail(self, error: BaseException) -> None:
        if not isinstance(error, ChannelClosed):
            self.run.fail(self.name, error)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
