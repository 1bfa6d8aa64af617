"""Rails ActiveJob through Sidekiq: run Rails jobs in Python, enqueue Python-built jobs for Rails.

Rails' Sidekiq adapter pushes a Sidekiq job whose ``class`` is a wrapper
(``ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper``; Sidekiq 8 names it
``Sidekiq::ActiveJob::Wrapper``) and whose only argument is the serialized job: ``job_class``,
``job_id``, ``arguments`` in ActiveJob's ``_aj_`` encodings, ``executions``, ``locale``...
Registering a handler for a ``job_class`` is one line::

    @activejob.job(app, "HelloJob", queue="py")
    def hello(name, greeting="hi"): ...

and ``hello.enqueue("Bob", greeting="yo")`` writes the envelope Rails 6.1 writes, so either side
can run it. How each ``_aj_`` form decodes (this table is in ``docs/sidekiq.md`` too):

| ActiveJob form                                   | Python value                              |
|--------------------------------------------------|-------------------------------------------|
| null, true, string, integer, float               | the same                                  |
| SymbolSerializer                                 | :class:`Symbol` (a ``str``)               |
| hash with ``_aj_symbol_keys``                    | ``dict``; those keys are :class:`Symbol`  |
| hash with ``_aj_hash_with_indifferent_access``   | ``dict`` (the marker dropped)             |
| last argument hash with ``_aj_ruby2_keywords``   | keyword arguments                         |
| Time, TimeWithZone, DateTime serializers         | aware ``datetime`` (nanoseconds cut)      |
| DateSerializer                                   | ``date``                                  |
| DurationSerializer                               | ``timedelta`` (calendar parts flattened)  |
| BigDecimalSerializer (Rails 7.1+)                | ``Decimal``; Rails 6.1 writes a string    |
| ModuleSerializer, RangeSerializer (7.1+)         | :class:`Symbol`, :class:`RubyRange`       |
| ``{"_aj_globalid": "gid://app/Model/42"}``       | :class:`GlobalID`                         |

An unknown custom serializer is a malformed job (dead set, with its name in the reason) unless
:func:`register_serializer` taught Conveyor how to decode it. This module is one piece (codec,
envelope and registration, ~400 lines) because the three share every name and table above.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import MalformedJob, SerializationError

if TYPE_CHECKING:
    from .app import App, JobSpec
    from .client import JobHandle
    from .job import Job

RAILS_WRAPPER = "ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper"
SIDEKIQ8_WRAPPER = "Sidekiq::ActiveJob::Wrapper"
WRAPPER_CLASSES = frozenset({RAILS_WRAPPER, SIDEKIQ8_WRAPPER})

GLOBALID_KEY = "_aj_globalid"
SERIALIZED_KEY = "_aj_serialized"
SYMBOL_KEYS_KEY = "_aj_symbol_keys"
RUBY2_KEYWORDS_KEY = "_aj_ruby2_keywords"
WITH_INDIFFERENT_ACCESS_KEY = "_aj_hash_with_indifferent_access"
RESERVED_KEYS = frozenset({GLOBALID_KEY, SERIALIZED_KEY, SYMBOL_KEYS_KEY, RUBY2_KEYWORDS_KEY,
                           WITH_INDIFFERENT_ACCESS_KEY})
_S = "ActiveJob::Serializers::"
NANO_DIGITS_PAD = "000"  # Python keeps microseconds; Rails writes nine fractional digits


class Symbol(str):
    """A Ruby Symbol. It is a ``str`` (``Symbol("a") == "a"``); encoding it back gives a Symbol."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Symbol({str.__repr__(self)})"


@dataclass(frozen=True, slots=True)
class GlobalID:
    """A GlobalID reference such as ``gid://myapp/User/42`` (a Rails model by class and id)."""

    uri: str

    @property
    def app(self) -> str:
        return urlsplit(self.uri).netloc

    @property
    def model_name(self) -> str:
        return urlsplit(self.uri).path.lstrip("/").split("/", 1)[0]

    @property
    def model_id(self) -> str:
        parts = urlsplit(self.uri).path.lstrip("/").split("/", 1)
        return parts[1] if len(parts) > 1 else ""

    @property
    def params(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.uri).query))

    def __str__(self) -> str:
        return self.uri


@dataclass(frozen=True, slots=True)
class RubyRange:
    """A Ruby Range (Rails 7.1+ serializes it): ``begin..end`` or ``begin...end``."""

    begin: Any
    end: Any
    exclude_end: bool = False


# --- decoding ---------------------------------------------------------------------------------
def _parse_time(value: Any, time_zone: Any = None) -> datetime:
    moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if isinstance(time_zone, str) and time_zone:
        try:
            return moment.astimezone(ZoneInfo(time_zone))
        except (ZoneInfoNotFoundError, ValueError):
            return moment
    return moment


def _decode_duration(h: Mapping[str, Any]) -> timedelta:
    return timedelta(seconds=float(h["value"]))


def _decode_range(h: Mapping[str, Any]) -> RubyRange:
    return RubyRange(decode_argument(h.get("begin")), decode_argument(h.get("end")),
                     bool(h.get("exclude_end")))


SERIALIZERS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    _S + "SymbolSerializer": lambda h: Symbol(h["value"]),
    _S + "TimeSerializer": lambda h: _parse_time(h["value"]),
    _S + "DateTimeSerializer": lambda h: _parse_time(h["value"]),
    _S + "TimeWithZoneSerializer": lambda h: _parse_time(h["value"], h.get("time_zone")),
    _S + "DateSerializer": lambda h: date.fromisoformat(h["value"]),
    _S + "DurationSerializer": _decode_duration,
    _S + "BigDecimalSerializer": lambda h: Decimal(h["value"]),
    _S + "ModuleSerializer": lambda h: Symbol(h["value"]),
    _S + "RangeSerializer": _decode_range,
}


def register_serializer(name: str, decode: Callable[[Mapping[str, Any]], Any]) -> None:
    """Teach the decoder an app's custom ActiveJob serializer (``_aj_serialized: name``)."""
    SERIALIZERS[name] = decode


def decode_argument(value: Any) -> Any:
    """One ActiveJob-serialized argument as a Python value (see the table above)."""
    if isinstance(value, list):
        return [decode_argument(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and GLOBALID_KEY in value:
        return GlobalID(str(value[GLOBALID_KEY]))
    if SERIALIZED_KEY in value:
        name = value[SERIALIZED_KEY]
        decode = SERIALIZERS.get(name)
        if decode is None:
            raise MalformedJob(f"ActiveJob argument uses serializer {name!r}, which Conveyor does "
                               "not know; register it with conveyor.activejob.register_serializer")
        try:
            return decode(value)
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedJob(f"ActiveJob argument {name!r} cannot be decoded: {exc}") from None
    symbol_keys = value.get(SYMBOL_KEYS_KEY) or value.get(RUBY2_KEYWORDS_KEY) or ()
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key in RESERVED_KEYS:
            continue
        out[Symbol(key) if key in symbol_keys else key] = decode_argument(item)
    return out


def decode_arguments(arguments: Sequence[Any]) -> tuple[list[Any], dict[str, Any]]:
    """ActiveJob ``arguments`` as positional and keyword arguments for a Python handler."""
    if not isinstance(arguments, list):
        kind = type(arguments).__name__
        raise MalformedJob(f"ActiveJob 'arguments' must be an array, got {kind}")
    items = list(arguments)
    kwargs: dict[str, Any] = {}
    if items and isinstance(items[-1], dict) and RUBY2_KEYWORDS_KEY in items[-1]:
        kwargs = {str(k): v for k, v in decode_argument(items.pop()).items()}
    return [decode_argument(v) for v in items], kwargs


# --- encoding ---------------------------------------------------------------------------------
def _iso9(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise SerializationError(f"datetime {moment.isoformat()} has no time zone; Rails needs "
                                 "an aware datetime (for example datetime.now(UTC))")
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + NANO_DIGITS_PAD
    offset = moment.utcoffset()
    if not offset:
        return text + "Z"
    return text + moment.strftime("%z")[:3] + ":" + moment.strftime("%z")[3:5]


def _serialized(name: str, **fields: Any) -> dict[str, Any]:
    return {SERIALIZED_KEY: _S + name, **fields}


def _encode_hash(value: Mapping[Any, Any], path: str, marker: str = SYMBOL_KEYS_KEY,
                 all_symbols: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    symbols: list[str] = []
    for key, item in value.items():
        if not isinstance(key, str):
            raise SerializationError(f"{path} has key {key!r}; ActiveJob hash keys are strings")
        if key in RESERVED_KEYS:
            raise SerializationError(f"{path} uses the reserved key {key!r}")
        out[str(key)] = encode_argument(item, f"{path}[{key!r}]")  # plain str: orjson wants it
        if all_symbols or isinstance(key, Symbol):
            symbols.append(str(key))
    if symbols or marker == RUBY2_KEYWORDS_KEY:
        out[marker] = symbols
    return out


def _encode_float(value: float, path: str) -> float:
    if value != value or value in (float("inf"), float("-inf")):
        raise SerializationError(f"{path} is {value!r}; JSON has no NaN or infinity")
    return value


def _encode_duration(value: timedelta, path: str) -> dict[str, Any]:
    seconds = value.total_seconds()
    n: int | float = int(seconds) if seconds.is_integer() else seconds
    return _serialized("DurationSerializer", value=n,
                       parts=[[_serialized("SymbolSerializer", value="seconds"), n]])


def _encode_list(value: Sequence[Any], path: str) -> list[Any]:
    return [encode_argument(v, f"{path}[{i}]") for i, v in enumerate(value)]


# Checked in order: bool before int is implied (both kept as they are), Symbol before str and
# datetime before date because each is a subclass of the next.
_ENCODERS: tuple[tuple[type | tuple[type, ...], Callable[[Any, str], Any]], ...] = (
    ((type(None), bool, int), lambda v, _: v),
    (float, _encode_float),
    (Symbol, lambda v, _: _serialized("SymbolSerializer", value=str(v))),
    (str, lambda v, _: v),
    (GlobalID, lambda v, _: {GLOBALID_KEY: v.uri}),
    (datetime, lambda v, _: _serialized("TimeSerializer", value=_iso9(v))),
    (date, lambda v, _: _serialized("DateSerializer", value=v.isoformat())),
    (timedelta, _encode_duration),
    # Rails 6.1 writes BigDecimal#to_s and hands the job a String: do the same
    (Decimal, lambda v, _: str(v)),
    (Mapping, _encode_hash),
    ((list, tuple), _encode_list),
)


def encode_argument(value: Any, path: str = "argument") -> Any:
    """A Python value in ActiveJob's serialized form, as Rails 6.1 writes it."""
    for types, encode in _ENCODERS:
        if isinstance(value, types):
            return encode(value, path)
    raise SerializationError(f"{path} is a {type(value).__name__}, which ActiveJob cannot carry")


def encode_arguments(args: Sequence[Any], kwargs: Mapping[str, Any] | None = None) -> list[Any]:
    """Positional and keyword arguments as ActiveJob ``arguments`` (keywords last, marked)."""
    out = [encode_argument(v, f"argument {i}") for i, v in enumerate(args)]
    if kwargs:
        out.append(_encode_hash(kwargs, "keyword arguments", RUBY2_KEYWORDS_KEY, all_symbols=True))
    return out


# --- the envelope -----------------------------------------------------------------------------
def job_data(job_class: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
             *, queue: str = "default", priority: int | None = None, job_id: str | None = None,
             locale: str = "en", timezone: str = "UTC") -> dict[str, Any]:
    """ActiveJob's serialized job (``args[0]`` of the envelope), every field Rails 6.1 writes."""
    return {
        "job_class": job_class,
        "job_id": job_id or str(uuid.uuid4()),
        "provider_job_id": None,
        "queue_name": queue,
        "priority": priority,
        "arguments": encode_arguments(args, kwargs),
        "executions": 0,
        "exception_executions": {},
        "locale": locale,
        "timezone": timezone,
        "enqueued_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def enqueue(app: App, job_class: str, *args: Any, queue: str = "default",
            wait: float | None = None, wait_until: datetime | float | None = None,
            priority: int | None = None, wrapper: str = RAILS_WRAPPER, retry: bool | int = True,
            options: Mapping[str, Any] | None = None, **kwargs: Any) -> JobHandle:
    """Enqueue ``job_class`` as Rails' ``perform_later`` does (``set(wait:)`` = ``wait``).

    ``options`` adds Sidekiq options to the envelope (``backtrace``, ``retry_queue``, ``tags``).
    Other keyword arguments become the job's Ruby keyword arguments, so a job keyword named like
    one of the options above must be passed through :func:`job_data` and ``app.enqueue``.
    """
    data = job_data(job_class, args, kwargs, queue=queue, priority=priority)
    return app.enqueue(wrapper, args=[data], queue=queue, retry=retry, delay=wait, at=wait_until,
                       extra={"wrapped": job_class, **(options or {})})


# --- handlers ---------------------------------------------------------------------------------
class ActiveJobFunction:
    """A Python handler registered for an ActiveJob ``job_class``; enqueues envelopes."""

    def __init__(self, app: App, spec: JobSpec) -> None:
        self.app = app
        self.spec = spec
        self.__wrapped__ = spec.fn
        self.__doc__ = spec.fn.__doc__

    @property
    def job_class(self) -> str:
        return self.spec.name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.spec.fn(*args, **kwargs)

    def enqueue(self, *args: Any, **kwargs: Any) -> JobHandle:
        return enqueue(self.app, self.spec.name, *args, queue=self.spec.queue, **kwargs)

    def enqueue_in(self, seconds: float, *args: Any, **kwargs: Any) -> JobHandle:
        return enqueue(self.app, self.spec.name, *args, queue=self.spec.queue, wait=seconds,
                       **kwargs)

    def enqueue_at(self, when: datetime, *args: Any, **kwargs: Any) -> JobHandle:
        return enqueue(self.app, self.spec.name, *args, queue=self.spec.queue, wait_until=when,
                       **kwargs)


def job(app: App, job_class: str, *, queue: str = "default", retry: bool | int = True,
        timeout: float | None = None, executor: str | None = None,
        ) -> Callable[[Callable[..., Any]], ActiveJobFunction]:
    """Register a handler for the ActiveJob class ``job_class`` (decorator)."""
    from .app import JobSpec

    def register(fn: Callable[..., Any]) -> ActiveJobFunction:
        spec = JobSpec(name=job_class, fn=fn, queue=queue, retry=retry, timeout=timeout,
                       executor=executor, options={"activejob": True})
        app.register(spec)
        return ActiveJobFunction(app, spec)

    return register


class Call(NamedTuple):
    """What a worker runs for a job: the handler's spec and the decoded arguments. (A named
    tuple: a frozen dataclass costs a microsecond per job to build, a tenth of the 10 us
    budget per job started of issue 3's 10,000 concurrent jobs.)"""

    spec: JobSpec
    args: list[Any]
    kwargs: dict[str, Any]


def unwrapped_class(payload: Mapping[str, Any]) -> str | None:
    """The ``job_class`` inside an ActiveJob envelope, or None when it is not one."""
    if payload.get("class") not in WRAPPER_CLASSES:
        return None
    args = payload.get("args")
    if not isinstance(args, list) or len(args) != 1 or not isinstance(args[0], dict):
        raise MalformedJob("an ActiveJob envelope must have exactly one argument, the job data")
    name = args[0].get("job_class")
    if not isinstance(name, str) or not name:
        raise MalformedJob("the ActiveJob job data has no 'job_class'")
    return name


def job_type(payload: Mapping[str, Any]) -> str:
    """The name a job is dispatched by: ``job_class`` for envelopes, else ``class``."""
    return unwrapped_class(payload) or str(payload.get("class", ""))


def resolve(app: App, job: Job) -> Call | None:
    """The handler and arguments for ``job``, or None when no handler is registered.

    Envelopes dispatch on ``job_class`` with decoded arguments; other jobs on ``class``.
    Raises MalformedJob for an envelope that cannot be decoded.
    """
    aj_class = unwrapped_class(job.data)
    if aj_class is None:
        spec = app.registry.get(job.name)
        return None if spec is None else Call(spec, job.args, job.kwargs)
    spec = app.registry.get(aj_class)
    if spec is None:
        return None
    args, kwargs = decode_arguments(job.args[0].get("arguments") or [])
    return Call(spec, args, kwargs)


def current_job_data() -> dict[str, Any]:
    """Inside a running ActiveJob handler: the job data (``job_id``, ``executions``, ...)."""
    from .context import current_job

    args = current_job().payload.get("args") or [{}]
    return dict(args[0]) if isinstance(args[0], dict) else {}
