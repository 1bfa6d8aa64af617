"""The App the Python sidecar serves in the http executor tests: the same jobs, by name."""

from __future__ import annotations

from conveyor.app import App, JobSpec

from .jobs import ASYNC_FUNCTIONS

app = App()
for _name, _fn in ASYNC_FUNCTIONS.items():
    app.register(JobSpec(name=_name, fn=_fn))
