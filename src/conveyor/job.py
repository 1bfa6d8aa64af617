"""The job payload: Sidekiq's JSON wire format, built, checked and parsed here.

A job on the wire is one JSON object with Sidekiq's fields (``class``, ``args``, ``jid``,
``queue``, ``retry``, float-second ``created_at`` / ``enqueued_at``) plus, when needed, Conveyor's
own keys (``kwargs``, ``timeout``, ``traceparent``). Unknown keys written by other producers are
kept untouched because every rewrite starts from the raw string read from Redis.

Encoding is compact UTF-8 JSON (what Ruby's ``JSON.generate`` writes). NaN and infinities are
refused, as are values JSON cannot carry (sets, datetimes, objects): the error names the argument.
Decoding falls back to the standard library when a number may not fit a 64-bit integer, so big
integers keep their exact value.

The client builds the common payload (no extra keys) by splicing bytes instead of building and
dumping a dict: :func:`payload_head` is encoded once per job type, queue and retry setting, and
:func:`encode_job` / :func:`plain_encoder` add the arguments, id and timestamps. The result is
byte for byte what :func:`dumps` writes for :func:`build_payload`; anything unusual (values JSON
cannot carry, integers beyond 64 bits, extra keys) takes the dict path.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson

from .errors import MalformedJob, SerializationError

JID_BYTES = 12  # 24 hex characters, like Sidekiq
DEFAULT_QUEUE = "default"
MAX_QUEUE_NAME_LEN = 200
HEAD_CACHE_SIZE = 1024  # distinct (type, queue, retry) payload heads kept encoded

_ORJSON_OPTS = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
# A run of 19 digits may be an integer beyond 64 bits, which orjson would turn into a float.
# Found by mapping every digit to "0" and anything else to " " and looking for 19 zeros: a
# fifth of the time of the regex \d{19,} on a job with two float timestamps (0.27 vs 1.55 us).
_DIGIT_MAP = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
_BIG_INT_RUN = b"0" * 19
_NOT_JSON = (set, frozenset, bytes, bytearray, complex)


def new_jid() -> str:
    """A new job id: 24 lowercase hex characters (12 random bytes), as Sidekiq makes them."""
    return os.urandom(JID_BYTES).hex()


def now_s() -> float:
    """Epoch seconds as a float (Sidekiq timestamps are floats; an int would read as ms in 8.x)."""
    return time.time()


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON")


def dumps(obj: Any) -> bytes:
    """Encode to compact UTF-8 JSON; raise SerializationError for anything JSON cannot carry."""
    try:
        out = orjson.dumps(obj, default=_refuse, option=_ORJSON_OPTS)
    except TypeError as exc:
        if "64-bit" in str(exc) or "Integer" in str(exc):
            return _dumps_std(obj)
        raise SerializationError(_describe_bad_value(obj) or str(exc)) from None
    if b"null" in out:
        bad = _describe_bad_value(obj)
        if bad:
            raise SerializationError(bad)
    return out


def _dumps_std(obj: Any) -> bytes:
    try:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise SerializationError(_describe_bad_value(obj) or str(exc)) from None


def loads(raw: bytes | str) -> Any:
    """Decode JSON; exact for integers beyond 64 bits."""
    data = raw.encode() if isinstance(raw, str) else raw
    if _BIG_INT_RUN in data.translate(_DIGIT_MAP):
        return json.loads(data)
    return orjson.loads(data)


def _describe_bad_value(obj: Any, path: str = "value") -> str | None:
    """Find the first value JSON cannot carry and say where it is, or None if all is well."""
    if obj is None or isinstance(obj, bool | int | str):
        return None
    if isinstance(obj, float):
        return None if math.isfinite(obj) else f"{path} is {obj!r}; JSON has no NaN or infinity"
    if isinstance(obj, Mapping):
        for key, val in obj.items():
            if not isinstance(key, str):
                return f"{path} has a non-string key {key!r}; JSON object keys must be strings"
            bad = _describe_bad_value(val, f"{path}[{key!r}]")
            if bad:
                return bad
        return None
    if isinstance(obj, list | tuple):
        for i, val in enumerate(obj):
            bad = _describe_bad_value(val, f"{path}[{i}]")
            if bad:
                return bad
        return None
    kind = type(obj).__name__
    hint = " (send bytes as base64 text)" if isinstance(obj, _NOT_JSON) else ""
    return f"{path} is a {kind}, which is not JSON-serializable{hint}"


def check_arguments(args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """Raise SerializationError naming the first argument that cannot travel as JSON."""
    for i, val in enumerate(args):
        bad = _describe_bad_value(val, f"argument {i}")
        if bad:
            raise SerializationError(bad)
    for name, val in kwargs.items():
        bad = _describe_bad_value(val, f"keyword argument {name!r}")
        if bad:
            raise SerializationError(bad)


def validate_queue_name(queue: str) -> str:
    if not isinstance(queue, str) or not queue:
        raise ValueError("queue name must be a non-empty string")
    if not _queue_name_allowed(queue):
        raise ValueError(
            f"queue name {queue[:40]!r} is not allowed: at most {MAX_QUEUE_NAME_LEN} characters, "
            "no spaces, commas or line breaks"
        )
    return queue


@lru_cache(maxsize=HEAD_CACHE_SIZE)
def _queue_name_allowed(queue: str) -> bool:
    return len(queue) <= MAX_QUEUE_NAME_LEN and not any(c in queue for c in "\n\r\0 ,")


def build_payload(
    name: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    queue: str = DEFAULT_QUEUE,
    retry: bool | int = True,
    jid: str | None = None,
    created_at: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A Sidekiq-format job dict (``enqueued_at`` is added by :func:`stamp_enqueued`)."""
    payload: dict[str, Any] = {
        "retry": retry,
        "queue": queue,
        "class": name,
        "args": list(args),
    }
    if kwargs:
        payload["kwargs"] = dict(kwargs)
    if extra:
        payload.update(extra)
    payload["jid"] = jid or new_jid()
    payload["created_at"] = created_at if created_at is not None else now_s()
    return payload


@lru_cache(maxsize=HEAD_CACHE_SIZE)
def payload_head(name: str, queue: str, retry: bool | int) -> bytes:
    """The bytes a job's JSON starts with, up to its ``args`` value: the same for every job of
    one type, queue and retry setting, so the client encodes them once (and caches them)."""
    return b"".join((b'{"retry":', orjson.dumps(retry), b',"queue":', orjson.dumps(queue),
                     b',"class":', orjson.dumps(name), b',"args":'))


def encode_timestamp(at: float) -> bytes:
    """A float-second timestamp as it appears in a payload."""
    return orjson.dumps(at)


def encode_job(head: bytes, args: Sequence[Any], kwargs: Mapping[str, Any], jid: str,
               created_at: bytes, enqueued_at: bytes | None) -> bytes | None:
    """The JSON of a job with no extra keys, spliced from its parts without building the dict:
    byte for byte what :func:`dumps` writes for :func:`build_payload` (then
    :func:`stamp_enqueued` unless ``enqueued_at`` is None). ``head`` comes from
    :func:`payload_head`, the timestamps from :func:`encode_timestamp`.

    Returns None when the arguments need the general path (a value JSON cannot carry, or an
    integer beyond 64 bits), which then raises the precise error or encodes them exactly.
    """
    if type(args) not in (list, tuple) or (kwargs and type(kwargs) is not dict):
        return None  # build_payload copies other sequences and mappings first
    try:
        body = orjson.dumps(args, default=_refuse, option=_ORJSON_OPTS)
        extra = orjson.dumps(kwargs, default=_refuse, option=_ORJSON_OPTS) if kwargs else b""
    except TypeError:
        return None
    if (b"null" in body or b"null" in extra) and _describe_bad_value([args, kwargs]):
        return None  # NaN or an infinity, which orjson writes as null
    parts = [head, body]
    if extra:
        parts += (b',"kwargs":', extra)
    parts += (b',"jid":', orjson.dumps(jid), b',"created_at":', created_at)
    if enqueued_at is not None:
        parts += (b',"enqueued_at":', enqueued_at)
    parts.append(b"}")
    return b"".join(parts)


def encodable(calls: Sequence[tuple[Sequence[Any], Mapping[str, Any]]]) -> bool:
    """True when :func:`encode_job` encodes every (args, kwargs) pair; checked in one orjson
    call, so a batch can be validated before any of it is encoded and sent."""
    if not all(type(args) in (list, tuple) and (not kwargs or type(kwargs) is dict)
               for args, kwargs in calls):
        return False
    try:
        out = orjson.dumps(calls, default=_refuse, option=_ORJSON_OPTS)
    except TypeError:
        return False
    return b"null" not in out or _describe_bad_value(calls) is None


def plain_encoder(created_at: bytes) -> Callable[[bytes, Sequence[Any], Mapping[str, Any], str],
                                                 bytes]:
    """``encode(head, args, kwargs, jid)``: what :func:`encode_job` writes for a job due now
    (``enqueued_at`` equal to ``created_at``), for arguments :func:`encodable` accepted and a
    generated jid (hex, so it needs no escaping). The checks are the caller's, done once per
    batch, so a job costs only its orjson calls and the concatenation."""
    tail = b'","created_at":' + created_at + b',"enqueued_at":' + created_at + b"}"
    dumps, opts = orjson.dumps, _ORJSON_OPTS

    def encode(head: bytes, args: Sequence[Any], kwargs: Mapping[str, Any], jid: str) -> bytes:
        if kwargs:
            return (head + dumps(args, None, opts) + b',"kwargs":' + dumps(kwargs, None, opts)
                    + b',"jid":"' + jid.encode() + tail)
        return head + dumps(args, None, opts) + b',"jid":"' + jid.encode() + tail

    return encode


def stamp_enqueued(payload: dict[str, Any], at: float | None = None) -> dict[str, Any]:
    """Set ``enqueued_at`` last, where the scheduler's Lua expects to refresh it."""
    payload.pop("enqueued_at", None)
    payload["enqueued_at"] = at if at is not None else now_s()
    return payload


@dataclass(slots=True)
class Job:
    """A job taken from Redis by a worker: the exact raw bytes and the parsed payload."""

    raw: bytes
    data: dict[str, Any]
    queue: str
    token: str = ""
    fetched_at: float = field(default_factory=time.monotonic)

    @property
    def jid(self) -> str:
        return str(self.data.get("jid") or "")

    @property
    def name(self) -> str:
        return str(self.data["class"])

    @property
    def args(self) -> list[Any]:
        args: list[Any] = self.data["args"]
        return args

    @property
    def kwargs(self) -> dict[str, Any]:
        return self.data.get("kwargs") or {}

    @property
    def attempt(self) -> int:
        """1 for the first run, 2 after one failure, and so on."""
        count = self.data.get("retry_count")
        return 1 if count is None else int(count) + 2


def parse_job(raw: bytes, queue: str, token: str = "") -> Job:
    """Parse a raw job, or raise MalformedJob saying what is wrong with it."""
    try:  # loads(), inlined for bytes: this runs for every job a worker takes
        data = (json.loads(raw) if _BIG_INT_RUN in raw.translate(_DIGIT_MAP)
                else orjson.loads(raw)) if type(raw) is bytes else loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedJob(f"not valid JSON: {exc}") from None
    # exact type checks first: this runs for every job a worker takes (JSON gives exact types)
    if type(data) is not dict:
        raise MalformedJob(f"a job must be a JSON object, got {type(data).__name__}")
    cls = data.get("class")
    if type(cls) is not str or not cls:
        raise MalformedJob("the job has no 'class' (its type name)")
    args = data.get("args", _ABSENT)
    if args is _ABSENT:
        data["args"] = []
    elif type(args) is not list:
        raise MalformedJob(f"'args' must be an array, got {type(args).__name__}")
    kwargs = data.get("kwargs")
    if kwargs is not None and type(kwargs) is not dict:
        raise MalformedJob(f"'kwargs' must be an object, got {type(kwargs).__name__}")
    if "retry_count" in data or "timeout" in data:
        _check_numbers(data)
    return Job(raw, data, queue, token, time.monotonic())


_ABSENT: Any = object()
SIDEKIQ_RETRY_NOW_COUNT = -1


def _check_numbers(data: dict[str, Any]) -> None:
    """The fields the worker computes with must have their types, or the job would run (and
    fail, and retry) on garbage, or wedge its worker slot (issue 9, scenario 8)."""
    count = data.get("retry_count")
    # -1 is Sidekiq's own: its Web UI's "Retry Now" writes it so the next failure counts 0.
    if count is not None and (type(count) is not int or count < SIDEKIQ_RETRY_NOW_COUNT):
        raise MalformedJob(f"'retry_count' must be an integer of at least -1, got {count!r:.40}")
    timeout = data.get("timeout")
    if timeout is not None and (type(timeout) not in (int, float) or not 0 < timeout < math.inf):
        raise MalformedJob(f"'timeout' must be a positive number of seconds, got {timeout!r:.40}")
