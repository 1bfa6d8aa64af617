"""Draw a DAG of named nodes as a tree from its sources (rich ``Tree``).

A node reached a second time (a fan-in) is shown as ``↳ name`` instead of being expanded again,
so every node and edge appears and the drawing stays a tree. Labels and styles come from the
caller, which keeps this usable for pipeline stages and anything else with edges.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.text import Text
from rich.tree import Tree

Label = Callable[[str], Text]


def draw_dag(
    nodes: Sequence[str],
    edges: Sequence[tuple[str, str]],
    label: Label | None = None,
    title: str = "",
) -> Tree:
    """A tree drawing of the graph; ``label(name)`` styles each node (default: its name)."""
    label = label or Text
    children: dict[str, list[str]] = {n: [] for n in nodes}
    has_parent: set[str] = set()
    for src, dst in edges:
        children.setdefault(src, []).append(dst)
        has_parent.add(dst)
    root = Tree(Text(title, style="bold"), guide_style="dim", hide_root=not title)
    shown: set[str] = set()

    def grow(branch: Tree, name: str) -> None:
        if name in shown:
            branch.add(Text("↳ ", style="dim") + label(name))
            return
        shown.add(name)
        node = branch.add(label(name))
        for child in children.get(name, []):
            grow(node, child)

    for name in nodes:
        if name not in has_parent:
            grow(root, name)
    for name in nodes:  # nodes only on a cycle (not expected) still appear
        if name not in shown:
            grow(root, name)
    return root
