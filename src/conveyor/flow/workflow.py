"""Workflows: ``chain`` (run B with A's result once A succeeded) and ``group`` (run members in
parallel; once every one has finished, run a callback exactly once with all their outcomes).

    from conveyor.flow import chain, group

    wf = chain(fetch.request(url), group(resize.request(200), resize.request(800),
                                         callback=publish.request()))
    handle = wf.enqueue(app)          # a WorkflowHandle
    handle.result(timeout=60)

Semantics:

* A step's input is the previous step's result, passed as its first positional argument
  (``immutable(req)`` runs a step without it). A group passes its input to every member.
* A chain stops at the first step that fails for good (dead, discarded or cancelled; a step that
  will be retried has not failed yet); the later steps never run and the chain has failed.
* A group's callback always runs once every member finished, whether they succeeded or not. It
  gets a list, in member order, of outcomes: ``{"jid", "state": "completed", "result"}`` or
  ``{"jid", "state": "dead"|"failed"|"cancelled", "error_class", "error_message"}`` (a nested
  chain reports its last step; a nested group without callback ``{"state", "result": [...]}``).
  The group then ends as its callback does. Without a callback the group's result is that list,
  and it counts as failed when a member failed.
* Nesting is free: chains of groups of chains...

Exactly once: every member's end is recorded by the same Lua script that acknowledges, fails,
drops or buries it (``_flow.lua``), once per member (a second end of the same member, say after
it was requeued from the dead set, changes nothing), and the last member's end enqueues the
callback in that same step. A worker killed at any point therefore cannot lose or double a
callback; the callback job itself runs at least once, like every job.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Union

from ..errors import ConfigurationError, ConveyorError
from ..job import new_jid

if TYPE_CHECKING:
    from ..app import App
    from ..client import EnqueueRequest
    from .views import WorkflowInfo

INPUT_SENTINEL = "\x00conveyor:input\x00"
_SENTINEL_JSON = b'"\\u0000conveyor:input\\u0000"'
MAX_WORKFLOW_JOBS = 10_000
RESULT_POLL_S = 0.05


class WorkflowFailed(ConveyorError):
    """Waited for a workflow's result, but it failed; ``info`` holds every node's outcome."""

    def __init__(self, info: WorkflowInfo) -> None:
        super().__init__(f"workflow {info.id} failed: {info.outcome}")
        self.info = info


@dataclass(frozen=True)
class Step:
    """One job of a workflow; ``pass_result=False`` runs it without the previous result."""

    request: EnqueueRequest
    pass_result: bool = True


Node = Union["EnqueueRequest", Step, "Chain", "Group"]


def immutable(request: EnqueueRequest) -> Step:
    """A step that does not receive the previous step's result."""
    return Step(request, pass_result=False)


class _Workflow:
    def enqueue(self, app: App) -> WorkflowHandle:
        """Store the workflow and enqueue its first jobs; returns a handle on it."""
        wfid, args = _compile(self, app)
        broker = app.client.sync
        k, s = broker.keys, broker.settings
        broker.script("workflow_start", [k.workflow(wfid)],
                      [k.queue_prefix, k.status_prefix, k.queues, s.status_ttl_s,
                       s.status_ttl_s, *args])
        return WorkflowHandle(app, wfid)

    async def aenqueue(self, app: App) -> WorkflowHandle:
        wfid, args = _compile(self, app)
        broker = await app.client.async_broker()
        k, s = broker.keys, broker.settings
        await broker.script("workflow_start", [k.workflow(wfid)],
                            [k.queue_prefix, k.status_prefix, k.queues, s.status_ttl_s,
                             s.status_ttl_s, *args])
        return WorkflowHandle(app, wfid)


@dataclass(frozen=True)
class Chain(_Workflow):
    steps: tuple[Node, ...]


@dataclass(frozen=True)
class Group(_Workflow):
    members: tuple[Node, ...]
    callback: Step | None = None


def chain(*steps: Node) -> Chain:
    """Run the steps one after another, each with the previous one's result."""
    if not steps:
        raise ConfigurationError("a chain needs at least one step")
    return Chain(tuple(steps))


def group(*members: Node | list[Node], callback: EnqueueRequest | Step | None = None) -> Group:
    """Run the members in parallel; then ``callback`` (once) with the list of their outcomes."""
    flat: list[Node] = []
    for m in members:
        flat.extend(m if isinstance(m, list) else [m])
    if not flat:
        raise ConfigurationError("a group needs at least one member")
    cb = callback if isinstance(callback, Step) or callback is None else Step(callback)
    return Group(tuple(flat), cb)


class WorkflowHandle:
    """A reference to a stored workflow: its state, its jobs and its result."""

    def __init__(self, app: App, wfid: str) -> None:
        self.app = app
        self.id = wfid

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.id}>"

    def status(self) -> WorkflowInfo:
        from .views import read_workflow

        return read_workflow(self.app.client.sync, self.id)

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the workflow to end; its result, or WorkflowFailed / TimeoutError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            info = self.status()
            if info.state == "completed":
                return info.result
            if info.state == "failed":
                raise WorkflowFailed(info)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"workflow {self.id} is still {info.state} after {timeout}s")
            time.sleep(RESULT_POLL_S)


# --- compiling to the workflow HASH (field names in _flow.lua) -----------------------------
def _compile(root: _Workflow, app: App) -> tuple[str, list[Any]]:
    fields: dict[str, Any] = {}
    counter = iter(range(MAX_WORKFLOW_JOBS * 4))
    assert isinstance(root, Chain | Group)
    _node(root, app, fields, counter, parent=None)
    jobs = sum(1 for f in fields if f.endswith(".jid"))
    if jobs > MAX_WORKFLOW_JOBS:
        raise ConfigurationError(f"a workflow may hold at most {MAX_WORKFLOW_JOBS} jobs, "
                                 f"this one has {jobs}")
    args: list[Any] = []
    for field, value in fields.items():
        args.extend((field, value))
    return "wf" + new_jid(), args


def _node(node: Node, app: App, fields: dict[str, Any], counter: Iterator[int],
          parent: str | None) -> str:
    nid = str(next(counter))
    if parent is not None:
        fields[f"{nid}.p"] = parent
    fields[f"{nid}.s"] = "pending"
    if isinstance(node, Chain | Group):
        kids = node.steps if isinstance(node, Chain) else node.members
        ids = [_node(kid, app, fields, counter, nid) for kid in kids]
        fields[f"{nid}.k"] = "chain" if isinstance(node, Chain) else "group"
        fields[f"{nid}.c"] = ",".join(ids)
        if isinstance(node, Chain):
            for a, b in pairwise(ids):
                fields[f"{a}.n"] = b
        elif node.callback is not None:
            fields[f"{nid}.cb"] = _node(node.callback, app, fields, counter, nid)
        return nid
    _job(node if isinstance(node, Step) else Step(node), app, fields, nid)
    return nid


def _job(step: Step, app: App, fields: dict[str, Any], nid: str) -> None:
    req = step.request
    if req.delay is not None or req.at is not None:
        raise ConfigurationError(f"workflow step {req.name!r}: delay/at are not supported")
    jid = req.jid or new_jid()
    item = app.client.build(replace(req, jid=jid))
    if item.unique_key:
        raise ConfigurationError(f"workflow step {req.name!r}: unique jobs cannot be steps")
    fields.update({f"{nid}.k": "job", f"{nid}.jid": jid, f"{nid}.cls": req.name,
                   f"{nid}.q": item.queue, f"{nid}.raw": item.raw})
    if step.pass_result:
        raw = app.client.build(replace(req, jid=jid, args=(INPUT_SENTINEL, *req.args))).raw
        pre, found, post = raw.partition(_SENTINEL_JSON)
        if not found or _SENTINEL_JSON in post:
            raise ConfigurationError(f"workflow step {req.name!r}: cannot place its input")
        fields[f"{nid}.pre"], fields[f"{nid}.post"] = pre, post
