"""From declared stages to a checked DAG: wiring rules, nested pipelines, build-time errors.

Wiring, per pipeline level:

* ``to=`` and ``from_=`` make explicit edges between names of the same pipeline level (a nested
  pipeline is named as a whole). ``dead_letter="stage"`` adds an edge too.
* A stage without ``to=`` (and not a consumer) feeds the next stage declared after it that is
  not a producer, has no ``from_=`` and is not named in another stage's ``to=``/``dead_letter=``.
  So a chain needs no wiring at all, and in a diamond (``split(to=[a, b])``, ``a``, ``b``,
  ``join``) both branches flow into ``join``.
* A nested pipeline is one node at its parent's level: edges into it reach its entry stages
  (those with no input inside it), edges out of it leave from its exit stages (those with no
  output inside it). Its stages are flattened into the run with dotted names.

Errors, raised by ``build()`` before anything runs: duplicate names, unknown names (the message
lists the known ones), cycles (the message shows the loop), a processor or consumer with no
input, an edge into a producer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import PipelineDefinitionError
from .config import Strategy
from .spec import StageSpec


@dataclass
class NestedNode:
    """A pipeline used as a stage of another."""

    name: str
    nodes: list[Any]  # StageSpec | NestedNode, in declaration order
    to: tuple[str, ...] | None = None
    from_: tuple[str, ...] | None = None
    kind: str = "pipeline"


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    dead_letter: bool = False


@dataclass
class Graph:
    """The flattened, checked stage graph of one pipeline."""

    name: str
    stages: dict[str, StageSpec]
    edges: list[Edge]
    order: list[str] = field(default_factory=list)  # topological

    def outputs(self, name: str) -> list[Edge]:
        return [e for e in self.edges if e.src == name]

    def inputs(self, name: str) -> list[Edge]:
        return [e for e in self.edges if e.dst == name]

    def senders(self, name: str) -> int:
        return len({e.src for e in self.edges if e.dst == name})

    def is_terminal(self, name: str) -> bool:
        spec = self.stages[name]
        return spec.kind != "consumer" and not any(
            not e.dead_letter for e in self.edges if e.src == name
        )


def build_graph(name: str, nodes: list[Any], contexts: dict[str, Strategy]) -> Graph:
    stages: dict[str, StageSpec] = {}
    edges: list[Edge] = []
    _wire_level("", nodes, stages, edges)
    graph = Graph(name, stages, _dedupe(edges))
    _resolve_contexts(graph, contexts)
    _check_inputs(graph)
    graph.order = _toposort(graph)
    return graph


def _dedupe(edges: list[Edge]) -> list[Edge]:
    seen: dict[tuple[str, str, bool], Edge] = {}
    for e in edges:
        seen.setdefault((e.src, e.dst, e.dead_letter), e)
    return list(seen.values())


def _wire_level(
    prefix: str, nodes: list[Any], stages: dict[str, StageSpec], edges: list[Edge]
) -> tuple[list[str], list[str]]:
    """Flatten one level; returns its (entry, exit) stage names for the level above."""
    local: dict[str, Any] = {}
    for node in nodes:
        if node.name in local:
            where = f" in nested pipeline {prefix[:-1]!r}" if prefix else ""
            raise PipelineDefinitionError(
                f"duplicate stage name {node.name!r}{where}; give one of them another name="
            )
        local[node.name] = node
    before = len(edges)
    ends: dict[str, tuple[list[str], list[str]]] = {}
    for node in nodes:
        full = prefix + node.name
        if isinstance(node, NestedNode):
            ends[node.name] = _wire_level(full + ".", node.nodes, stages, edges)
        else:
            stages[full] = replace(node, name=full, scope=prefix)
            ends[node.name] = ([full], [] if node.kind == "consumer" else [full])
    for a, b, dead in _level_edges(nodes, local):
        sources = ends[a][0] if dead else ends[a][1]
        edges.extend(Edge(s, d, dead) for s in sources for d in ends[b][0])
    inner = edges[before:]
    has_in = {e.dst for e in inner}
    has_out = {e.src for e in inner if not e.dead_letter}
    names = _flat(prefix, nodes)
    entries = [n for n in names if n not in has_in and stages[n].kind != "producer"]
    exits = [n for n in names if n not in has_out and stages[n].kind != "consumer"]
    return entries, exits


def _flat(prefix: str, nodes: list[Any]) -> list[str]:
    out: list[str] = []
    for node in nodes:
        if isinstance(node, NestedNode):
            out.extend(_flat(prefix + node.name + ".", node.nodes))
        else:
            out.append(prefix + node.name)
    return out


def _level_edges(nodes: list[Any], local: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, is_dead_letter) between the local names of one level."""

    def resolve(ref: str, who: str) -> str:
        if ref in local:
            return ref
        known = ", ".join(sorted(local))
        raise PipelineDefinitionError(
            f"stage {who!r} refers to unknown stage {ref!r}; stages at this level: {known}"
        )

    found: list[tuple[str, str, bool]] = []
    targeted: set[str] = set()
    for node in nodes:
        lname = _local(node)
        for ref in node.to or ():
            found.append((lname, resolve(ref, lname), False))
            targeted.add(resolve(ref, lname))
        for ref in node.from_ or ():
            found.append((resolve(ref, lname), lname, False))
        dead = getattr(node, "dead_letter", None)
        if isinstance(dead, str):
            found.append((lname, resolve(dead, lname), True))
            targeted.add(resolve(dead, lname))
    for i, node in enumerate(nodes):
        if node.to is not None or node.kind == "consumer":
            continue
        for nxt in nodes[i + 1 :]:
            if nxt.kind == "producer" or nxt.from_ is not None or _local(nxt) in targeted:
                continue
            found.append((_local(node), _local(nxt), False))
            break
    return found


def _local(node: Any) -> str:
    return str(node.name)


def _resolve_contexts(graph: Graph, contexts: dict[str, Strategy]) -> None:
    for spec in graph.stages.values():
        ctx = spec.strategy.context
        if ctx is None:
            continue
        if ctx not in contexts:
            known = ", ".join(sorted(contexts)) or "(none declared)"
            raise PipelineDefinitionError(
                f"stage {spec.name!r} uses unknown execution context {ctx!r}; contexts: {known}"
            )
        base = contexts[ctx]
        spec.strategy = Strategy(base.kind, base.size, ctx, base.requested)
        if spec.stage.is_async and base.kind != "asyncio":
            raise PipelineDefinitionError(
                f"stage {spec.name!r} is async but context {ctx!r} is {base.kind}; "
                "async stages need an asyncio context"
            )


def _check_inputs(graph: Graph) -> None:
    for name, spec in graph.stages.items():
        inputs = graph.inputs(name)
        if spec.kind == "producer" and inputs:
            raise PipelineDefinitionError(
                f"producer {name!r} cannot receive items, but {inputs[0].src!r} sends to it"
            )
        if spec.kind != "producer" and not inputs:
            raise PipelineDefinitionError(
                f"{spec.kind} {name!r} receives nothing: no stage before it feeds it (a stage "
                "with to= only feeds the stages it names); add from_= or to="
            )


def _toposort(graph: Graph) -> list[str]:
    """Kahn's order; on a cycle, report the loop itself."""
    indegree = {n: 0 for n in graph.stages}
    for e in graph.edges:
        indegree[e.dst] += 1
    ready = [n for n in graph.stages if indegree[n] == 0]
    order: list[str] = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for e in graph.outputs(n):
            indegree[e.dst] -= 1
            if indegree[e.dst] == 0:
                ready.append(e.dst)
    if len(order) < len(graph.stages):
        loop = _find_cycle(graph, [n for n in graph.stages if indegree[n] > 0])
        raise PipelineDefinitionError(
            f"the stages form a cycle: {' -> '.join(loop)}; pipelines must be acyclic"
        )
    return order


def _find_cycle(graph: Graph, candidates: list[str]) -> list[str]:
    succ: Callable[[str], list[str]] = lambda n: [e.dst for e in graph.outputs(n)]  # noqa: E731
    path: list[str] = []
    on_path: set[str] = set()
    visited: set[str] = set()

    def visit(n: str) -> list[str] | None:
        path.append(n)
        on_path.add(n)
        for m in succ(n):
            if m in on_path:
                return [*path[path.index(m) :], m]
            if m not in visited:
                found = visit(m)
                if found:
                    return found
        visited.add(n)
        on_path.discard(n)
        path.pop()
        return None

    for start in candidates:
        if start not in visited:
            loop = visit(start)
            if loop:
                return loop
    return candidates
