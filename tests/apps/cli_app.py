"""Jobs for the CLI tests: one that always fails and waits an hour before its retry, so it stays
in the retry set while the test looks at it."""

from __future__ import annotations

from conveyor import App
from conveyor.retry import Backoff

app = App()
HOUR = Backoff(base_s=3600.0, factor=1.0, cap_s=3600.0, jitter=0.0)


@app.job(name="always_fails", retry=3, backoff=HOUR)
def always_fails(reason: str) -> None:
    raise RuntimeError(reason)
