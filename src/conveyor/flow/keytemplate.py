"""Key templates: the part of a job that names its limit, lock or breaker key.

A template is plain text with fields in braces, rendered from the job being admitted or enqueued:

* ``{args.NAME}``   the argument called NAME, whether it was passed by position or by keyword
                    (bound against the job function's signature)
* ``{args[0]}``     the first positional argument
* ``{kwargs.NAME}`` a keyword argument
* ``{class}``, ``{queue}``  the job type and its queue

and any field may go on into dicts and lists: ``{args[0].customer.id}``, ``{kwargs.ids[1]}``.
``"tenant:{args.tenant_id}"`` gives every tenant its own limit. A field the job does not have is
an error naming the template and the field, never a silently shared key.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError

_FIELD = re.compile(r"\{([^{}]*)\}")
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(-?\d+)\]")
_ROOTS = ("args", "kwargs", "class", "queue")
_ROOT = re.compile(r"(args|kwargs|class|queue)(?![A-Za-z0-9_])")
# The templates whose every brace is a valid field, as a JSON-schema pattern (the REST API's;
# the parser itself also takes stray braces as text).
TEMPLATE_PATTERN = (r"^(?:[^{}]|\{(?:args|kwargs|class|queue)"
                    r"(?:\.[A-Za-z_][A-Za-z0-9_]*|\[-?[0-9]{1,9}\])*\})+$")


class KeyTemplateError(ConfigurationError):
    """A key template names a field the job does not have, or is not a valid template."""


@dataclass(frozen=True)
class KeyTemplate:
    """A parsed key template; :meth:`render` fills it from one job."""

    text: str

    def __post_init__(self) -> None:
        for field in _FIELD.findall(self.text):
            _parse(self.text, field)

    @property
    def is_static(self) -> bool:
        """True when the template has no fields (one key for every job)."""
        return not _FIELD.search(self.text)

    def render(self, name: str, queue: str, args: Sequence[Any], kwargs: Mapping[str, Any],
               fn: Callable[..., Any] | None = None) -> str:
        """The key for a job of type ``name`` called with ``args`` and ``kwargs``."""
        if self.is_static:
            return self.text
        roots = {"args": list(args), "kwargs": dict(kwargs), "class": name, "queue": queue}
        return _FIELD.sub(lambda m: _lookup(self.text, m.group(1), roots, fn), self.text)


def _parse(text: str, field: str) -> tuple[str, list[str | int]]:
    root = _ROOT.match(field)
    if root is None:
        raise KeyTemplateError(f"key template {text!r}: field {{{field}}} must start with one "
                               f"of {', '.join(_ROOTS)}")
    steps: list[str | int] = []
    pos = root.end()
    while pos < len(field):
        m = _STEP.match(field, pos)
        if m is None:
            raise KeyTemplateError(f"key template {text!r}: cannot read {{{field}}}; write "
                                   "fields like {args.name}, {args[0]} or {kwargs.x.y}")
        steps.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    return root.group(0), steps


def _lookup(text: str, field: str, roots: dict[str, Any], fn: Callable[..., Any] | None) -> str:
    root, steps = _parse(text, field)
    value: Any = roots[root]
    if root == "args" and steps and isinstance(steps[0], str):
        value = _bound(roots["args"], roots["kwargs"], fn)
    for step in steps:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            raise KeyTemplateError(f"key template {text!r}: the job has no {{{field}}} "
                                   f"(missing {step!r})") from None
    return value if isinstance(value, str) else _plain(value)


def _bound(args: list[Any], kwargs: dict[str, Any],
           fn: Callable[..., Any] | None) -> dict[str, Any]:
    """Arguments by parameter name, positional ones included when the function is known."""
    if fn is None:
        return dict(kwargs)
    try:
        bound = inspect.signature(fn).bind_partial(*args, **kwargs)
    except (TypeError, ValueError):
        return dict(kwargs)
    return dict(bound.arguments)


def _plain(value: Any) -> str:
    """Non-text values as compact JSON, so 7 and "7" name different keys only when typed so."""
    from ..job import dumps

    return dumps(value).decode()
