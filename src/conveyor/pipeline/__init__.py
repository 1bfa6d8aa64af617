"""Pipelines: stages over bounded channels, each with its own execution strategy.

See ``docs/pipelines.md`` for the guide. The pieces, from the outside in:

* ``pipeline.py``: the :class:`Pipeline` DSL; ``graph.py`` turns it into a checked DAG;
  ``spec.py`` checks stage options; ``config.py`` holds the defaults (:func:`configure`).
* ``run.py``: one run (start order, failure, shutdown, stats snapshots); ``inline.py`` the
  deterministic run for tests.
* Drivers, one per strategy: ``threads.py`` (inline, threads), ``aio.py`` (asyncio),
  ``pool.py`` (processes, forks, interpreters via the executors), ``distributed.py``.
* ``channel.py`` (bounded channels), ``emit.py`` (routing), ``order.py`` (reorder buffer),
  ``policy.py`` (error policies), ``stats.py`` (counters and snapshots), ``wire.py`` and
  ``remote.py`` (what crosses into worker processes), ``hud.py`` and ``cli.py``.
"""

from __future__ import annotations

from .channel import Channel, ChannelStats, EndOfStream
from .config import Defaults, configure, defaults, restore
from .graph import Graph
from .pipeline import Pipeline
from .policy import ErrorPolicy, retry
from .run import RunResult
from .stage import Batch, Stage, Unbatch
from .stats import PipelineStats, StageStats

__all__ = [
    "Batch",
    "Channel",
    "ChannelStats",
    "Defaults",
    "EndOfStream",
    "ErrorPolicy",
    "Graph",
    "Pipeline",
    "PipelineStats",
    "RunResult",
    "Stage",
    "StageStats",
    "Unbatch",
    "configure",
    "defaults",
    "restore",
    "retry",
]
