"""Unique jobs: while a job holds its unique key, enqueueing another with that key returns the
first job's id instead of adding a job.

The lock is a Redis STRING ``conveyor:unique:<key>`` holding the owner's jid, taken in the same
atomic step as the push (``enqueue.lua``) and given back by the scripts where the job starts or
ends (``_flow.lua``), only if it still holds the owner's jid. ``scope`` says when it is given back:

* ``queued``    when a worker starts the job (a duplicate may be enqueued while it runs);
* ``running``   when the job is finished for good: completed, dead, discarded or cancelled (it
                is held while the job waits for a retry) — the default;
* ``completed`` only when the job completes (or is cancelled); a dead job keeps the lock until its
                TTL, so nothing replaces it before someone looks at it.

Every lock also has a TTL (``ttl_s``, one hour by default), so a lost job cannot block its key for
ever. The known hole, shared with Sidekiq Enterprise and Asynq: if the TTL runs out while the job
is still queued, running or waiting to retry, a duplicate is accepted and both run. Pick a TTL
longer than the job can take, retries included. Two more: a job deferred by a rate limit goes back
to the schedule without a ``queued``-scope lock, and inline mode (tests) ignores uniqueness.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError
from .keytemplate import KeyTemplate

UNIQUE_TTL_S = 3600
UNIQUE_SCOPES = ("queued", "running", "completed")
DEFAULT_SCOPE = "running"
ARGS_DIGEST_CHARS = 32


@dataclass(frozen=True)
class Unique:
    """A job type's uniqueness: ``key`` is a key template (None: the job type plus a digest of
    its arguments), ``ttl_s`` the lock's longest life, ``scope`` when it is given back."""

    key: str | None = None
    ttl_s: float = UNIQUE_TTL_S
    scope: str = DEFAULT_SCOPE

    def __post_init__(self) -> None:
        check_scope(self.scope)
        if self.ttl_s < 1:
            raise ConfigurationError(f"unique ttl must be at least 1 second, got {self.ttl_s}")
        if self.key is not None:
            KeyTemplate(self.key)

    @classmethod
    def coerce(cls, value: Any) -> Unique:
        if isinstance(value, Unique):
            return value
        if value is True:
            return cls()
        if isinstance(value, str):
            return cls(key=value)
        if isinstance(value, Mapping):
            return cls(**value)
        raise ConfigurationError(f"unique must be True, a key template, a Unique or a dict, "
                                 f"got {value!r}")


def check_scope(scope: str) -> str:
    if scope not in UNIQUE_SCOPES:
        raise ConfigurationError(f"unique scope {scope!r} is not one of: "
                                 f"{', '.join(UNIQUE_SCOPES)}")
    return scope


def args_digest(name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """``<type>:<digest of the arguments>``: the default unique key."""
    from ..job import dumps

    body = dumps([list(args), dict(sorted(kwargs.items()))])
    return f"{name}:{hashlib.sha256(body).hexdigest()[:ARGS_DIGEST_CHARS]}"


def resolve(name: str, queue: str, args: Sequence[Any], kwargs: Mapping[str, Any],
            fn: Callable[..., Any] | None, declared: Any, key: str | None,
            ttl_s: float | None, scope: str | None) -> tuple[str, int, str] | None:
    """The (key, ttl seconds, scope) of one enqueue, or None when it is not unique.

    An explicit ``key`` (from the request) wins and is used as written; otherwise the job type's
    declared ``unique=`` option renders its template (or the argument digest).
    """
    policy = Unique.coerce(declared) if declared not in (None, False) else None
    if key is None and policy is None:
        if ttl_s is not None or scope is not None:
            raise ConfigurationError("unique_ttl/unique_scope need a unique_key (or a job "
                                     "declared with unique=)")
        return None
    if key is None:
        assert policy is not None
        key = (KeyTemplate(policy.key).render(name, queue, args, kwargs, fn) if policy.key
               else args_digest(name, args, kwargs))
    if not key:
        raise ConfigurationError("unique_key must not be empty")
    ttl = ttl_s if ttl_s is not None else (policy.ttl_s if policy else UNIQUE_TTL_S)
    if ttl < 1:
        raise ConfigurationError(f"unique_ttl must be at least 1 second, got {ttl}")
    chosen = check_scope(scope or (policy.scope if policy else DEFAULT_SCOPE))
    return key, round(ttl), chosen
