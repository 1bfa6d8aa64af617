"""``conveyor pipeline``: run or inspect a pipeline named as ``pkg.module:attr``.

``attr`` is a :class:`Pipeline`, or a function with no arguments that returns one. The lead's
CLI mounts :data:`pipeline_app` as ``conveyor pipeline``. Errors a user can fix (a bad target,
an invalid graph) print one line and exit 1; a run that fails prints the stage and error and
exits 1 too.
"""

from __future__ import annotations

import importlib
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from ..errors import ConveyorError, PipelineDefinitionError
from ..tui.dag import draw_dag
from .hud import render_frame
from .pipeline import Pipeline

pipeline_app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Run and inspect pipelines."
)
out = Console()
err = Console(stderr=True)


def load_pipeline(target: str) -> Pipeline:
    """Import ``pkg.module:attr`` and return the Pipeline it names (or builds)."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise PipelineDefinitionError(
            f"the target must look like 'package.module:pipe', got {target!r}"
        )
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PipelineDefinitionError(f"cannot import {module_name!r}: {exc}") from exc
    try:
        value: Any = getattr(module, attr)
    except AttributeError:
        raise PipelineDefinitionError(f"module {module_name!r} has no attribute {attr!r}") from None
    if callable(value) and not isinstance(value, Pipeline):
        value = value()
    if not isinstance(value, Pipeline):
        raise PipelineDefinitionError(
            f"{target!r} is a {type(value).__name__}, not a conveyor.pipeline.Pipeline"
        )
    return value


@pipeline_app.command("run")
def run_command(
    target: Annotated[str, typer.Argument(help="pkg.module:attr naming a Pipeline")],
    hud: Annotated[bool, typer.Option("--hud", help="Show the live HUD while it runs.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final stats as JSON.")] = False,
    deterministic: Annotated[
        bool, typer.Option("--deterministic", help="Run every stage in this thread.")
    ] = False,
) -> None:
    """Run a pipeline to the end and print its stats."""
    try:
        pipe = load_pipeline(target)
    except ConveyorError as exc:
        err.print(Text(f"error: {exc}", style="bold red"))
        raise typer.Exit(1) from None
    try:
        result = pipe.run(hud=hud, deterministic=deterministic or None)
    except ConveyorError as exc:
        err.print(Text(f"error: {exc}", style="bold red"))
        if as_json and pipe.current is not None:
            out.print(
                pipe.current.snapshot().to_json(), markup=False, highlight=False, soft_wrap=True
            )
        raise typer.Exit(1) from None
    if as_json:
        out.print(result.to_json(), markup=False, highlight=False, soft_wrap=True)
    elif not hud:
        out.print(render_frame(result.stats))


@pipeline_app.command("graph")
def graph_command(
    target: Annotated[str, typer.Argument(help="pkg.module:attr naming a Pipeline")],
) -> None:
    """Check a pipeline's graph and draw it, without running it."""
    try:
        graph = load_pipeline(target).build()
    except ConveyorError as exc:
        err.print(Text(f"error: {exc}", style="bold red"))
        raise typer.Exit(1) from None

    def label(name: str) -> Text:
        spec = graph.stages[name]
        return Text(f"{name} ") + Text(f"[{spec.kind}, {spec.strategy.label}]", style="dim")

    out.print(draw_dag(graph.order, [(e.src, e.dst) for e in graph.edges], label, graph.name))
