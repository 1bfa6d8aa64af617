"""The flow-policy duty: reloads the limits set at run time, so every worker applies a change
made through the API or CLI within ``POLICY_REFRESH_S``."""

from __future__ import annotations

from ..worker.duty import Duty
from .gate import Gate
from .policy import POLICY_REFRESH_S


class PolicyRefresher(Duty):
    name = "flow-policies"

    def __init__(self, gate: Gate, interval_s: float = POLICY_REFRESH_S) -> None:
        super().__init__(interval_s)
        self.gate = gate

    async def tick(self) -> bool:
        await self.gate.refresh()
        return False
