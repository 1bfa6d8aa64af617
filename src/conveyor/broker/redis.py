"""Redis access: one class per calling style (sync for clients, the CLI and the heartbeat thread;
async for the worker), sharing the argument building so both speak to the scripts the same way.

Every operation that moves a job is one Lua script (see ``scripts/``); plain reads are plain
commands. Nothing here decides policy (retry or not, how long to wait): callers do.

Past 600 lines on purpose: the two classes are one API in two calling styles, and they share
the argument building (``_Args``), the reply parsing and the WAITAOF handling kept above them;
split by style, every script's call would live in two files.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import redis
import redis.asyncio as aioredis
from redis.utils import HIREDIS_AVAILABLE

from ..errors import BrokerError, NotDurable
from ..keys import Keys
from ..settings import RECOVERIES_WINDOW_S, Settings
from .scripts import SCRIPT_NAMES, source

if HIREDIS_AVAILABLE:
    from hiredis import pack_command as hiredis_pack

ENQUEUE_CHUNK = 500  # jobs per enqueue script call; bounds the script's run time
RECOVER_MAX_WORKERS = 50  # expired workers handled per recover call
SOCKET_CONNECT_TIMEOUT_S = 5.0
BLOCKING_MARGIN_S = 1.0  # a blocking command's socket timeout exceeds its own timeout by this
HEALTH_CHECK_INTERVAL_S = 30


@dataclass(slots=True)
class EnqueueItem:
    """One job to push: its queue, raw JSON, id, type and when ("" now, "@ts", "+seconds"), and
    its unique lock (a key under ``conveyor:unique:``, its TTL and scope; "" for none)."""

    queue: str
    raw: bytes
    jid: str
    name: str
    when: str = ""
    unique_key: str = ""
    unique_ttl_s: int = 0
    unique_scope: str = ""


@dataclass(slots=True)
class Pushed:
    """What an enqueue did: counts, and the jobs refused as duplicates (index -> holder's jid)."""

    enqueued: int = 0
    scheduled: int = 0
    duplicates: dict[int, str] = field(default_factory=dict)

    def add(self, reply: Sequence[Any], offset: int) -> None:
        self.enqueued += int(reply[0])
        self.scheduled += int(reply[1])
        for i in range(2, len(reply), 2):
            self.duplicates[offset + int(reply[i]) - 1] = _text(reply[i + 1])


class Fetched(NamedTuple):
    """A job a fetch took (a named tuple: built a thousand at a time on the worker's loop)."""

    token: str
    queue: str
    raw: bytes


@dataclass(slots=True)
class Failure:
    """How to record a failed job: mode retry|dead|discard|cancelled, with its rewritten JSON."""

    token: str
    jid: str
    mode: str
    raw: bytes = b""
    delay_s: float = 0.0
    error_class: str = ""
    error_message: str = ""


def _full_or(exc: redis.ResponseError, url: str) -> Exception:
    """Redis's OOM refusal as a BrokerError that says what to do; other errors unchanged."""
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        return BrokerError(f"Redis at {url} is full (maxmemory reached) and refused the "
                           "script before it ran: let workers drain the backlog, or raise "
                           "maxmemory")
    return exc


def _wait_aof_command(settings: Settings) -> tuple[Any, ...]:
    """WAITAOF for the writes sent before it on the same connection: 1 local fsync, 0 replicas,
    at most ``wait_aof_s`` (in ms; WAITAOF's 0 would mean forever)."""
    return ("WAITAOF", 1, 0, max(1, round(settings.wait_aof_s * 1000)))


def _check_waitaof_reply(reply: Any, settings: Settings, url: str) -> None:
    if isinstance(reply, redis.ResponseError):
        raise BrokerError(f"WAITAOF failed on Redis at {url}: {reply}") from reply
    if not reply or int(reply[0]) < 1:
        raise NotDurable(f"Redis at {url} took the job(s) but did not confirm writing them to "
                         f"its append-only file within {settings.wait_aof_s:g}s (wait_aof_s): "
                         "they are enqueued, but a Redis crash now could lose them")


def check_wait_aof(client: redis.Redis, url: str) -> None:
    """Raise BrokerError unless WAITAOF can confirm writes on this Redis: checked before the
    first enqueue with ``wait_aof_s``, so a Redis that cannot confirm refuses jobs instead of
    taking them and failing each enqueue after the fact."""
    problem = None
    try:
        try:
            client.execute_command("WAITAOF", 0, 0, 0)  # returns at once, AOF on or off
        except redis.ResponseError as exc:
            problem = (f"this Redis has no usable WAITAOF ({exc}); wait_aof_s needs Redis 7.2+ "
                       "or Valkey 7.2+")
        if problem is None and int(client.info("persistence").get("aof_enabled", 0)) == 0:
            problem = "this Redis has appendonly off, so WAITAOF cannot confirm a write; turn it on"
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise BrokerError(f"cannot reach Redis at {url}: {exc}") from exc
    if problem:
        raise BrokerError(f"wait_aof_s is set, but {problem} (Redis at {url})")


def _connection_kwargs(settings: Settings, blocking_s: float = 0.0) -> dict[str, Any]:
    """Connection options; ``blocking_s`` is the longest blocking command the caller sends.
    Without an explicit socket timeout redis-py waits 5 s for an unreachable Redis, which is
    too long for the API (issue 9, F6)."""
    timeout = settings.redis_timeout_s
    return {
        "decode_responses": False,
        "socket_connect_timeout": min(SOCKET_CONNECT_TIMEOUT_S, timeout),
        "socket_timeout": max(timeout, blocking_s + BLOCKING_MARGIN_S) if blocking_s else timeout,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
    }


class _Args:
    """Builds KEYS/ARGV for each script; shared by the sync and async brokers."""

    def __init__(self, keys: Keys, settings: Settings) -> None:
        self.k = keys
        self.s = settings

    def enqueue(self, items: Sequence[EnqueueItem]) -> tuple[list[str], list[Any]]:
        """KEYS/ARGV of one ``enqueue.lua`` call: consecutive items that share a queue, a type,
        a time and uniqueness form a group, whose jobs then carry only their id and JSON."""
        args: list[Any] = [self.k.queue_prefix, self.k.status_prefix, self.s.status_ttl_s, 0]
        groups, count_at = 0, 0
        queue = name = when = None
        unique = False
        for it in items:
            if (it.queue != queue or it.name != name or it.when != when
                    or bool(it.unique_key) is not unique):
                if groups:
                    args[count_at] = (len(args) - count_at - 1) // (5 if unique else 2)
                queue, name, when, unique = it.queue, it.name, it.when, bool(it.unique_key)
                args += (queue, name, when, "1" if unique else "0", 0)
                groups += 1
                count_at = len(args) - 1
            if unique:
                args += (it.jid, it.raw, self.k.unique(it.unique_key), it.unique_ttl_s,
                         it.unique_scope)
            else:
                args += (it.jid, it.raw)
        if groups:
            args[count_at] = (len(args) - count_at - 1) // (5 if unique else 2)
        args[3] = groups
        return [self.k.queues, self.k.schedule], args

    def fetch(self, wid: str, queues: Sequence[str], count: int) -> tuple[list[str], list[Any]]:
        keys = [self.k.leases, self.k.inflight(wid), self.k.token, self.k.paused]
        for q in queues:
            keys.append(self.k.queue(q))
            keys.append(self.k.claim(wid, q))
        args: list[Any] = [wid, count, int(self.s.lease_ttl_s * 1000), self.k.status_prefix,
                           self.s.status_ttl_s, *queues]
        return keys, args

    def ack(self, wid: str, done: Sequence[tuple[str, str, bytes]]) -> tuple[list[str], list[Any]]:
        """The jobs packed into one argument (see ack.lua): redis-py encodes each argument in
        Python, 2 us per job for three each against 0.2 us for the packing. A jid holding a tab
        or a newline (not one Conveyor or Sidekiq makes) sends the batch one field each."""
        n = len(done)
        args: list[Any] = [self.k.status_prefix, self.s.status_ttl_s, n]
        packed = b"\n".join([b"%b\t%b\t%b" % (token.encode(), jid.encode(), result)
                             for token, jid, result in done])
        if packed.count(b"\t") == 2 * n and packed.count(b"\n") == n - 1:
            args.append(packed)
        else:
            for token, jid, result in done:
                args.extend((token, jid, result))
        return [self.k.inflight(wid)], args

    def fail(self, wid: str, f: Failure) -> tuple[list[str], list[Any]]:
        keys = [self.k.inflight(wid), self.k.retry, self.k.dead]
        args = [f.token, f.jid, f.mode, f.raw, f.delay_s, self.k.status_prefix,
                self.s.status_ttl_s, f.error_class, f.error_message, self.s.dead_max_jobs,
                self.s.dead_timeout_s]
        return keys, args

    def recover(self, mode: str, wid: str = "") -> tuple[list[str], list[Any]]:
        keys = [self.k.leases, self.k.workers, self.k.queues, self.k.quarantine, self.k.worker_info,
                self.k.suspects]
        args = [mode, wid, self.k.own(""), self.k.queue_prefix, self.s.max_recoveries,
                RECOVERIES_WINDOW_S, self.s.status_ttl_s, RECOVER_MAX_WORKERS,
                int(self.s.lease_ttl_s * 1000)]
        return keys, args

    def promote(self, source_key: str, limit: int) -> tuple[list[str], list[Any]]:
        keys = [source_key, self.k.queues, self.k.quarantine]
        return keys, [self.k.queue_prefix, self.k.status_prefix, limit, self.s.status_ttl_s]

    def bury(self, entry: bytes, dead_raw: bytes, jid: str, error_class: str,
             message: str) -> tuple[list[str], list[Any]]:
        keys = [self.k.quarantine, self.k.dead]
        args = [entry, dead_raw, jid, self.k.status_prefix, self.s.status_ttl_s, error_class,
                message, self.s.dead_max_jobs, self.s.dead_timeout_s]
        return keys, args

    def requeue(self, source_key: str, raws: Sequence[bytes]) -> tuple[list[str], list[Any]]:
        keys = [source_key, self.k.queues]
        return keys, [self.k.queue_prefix, self.k.status_prefix, self.s.status_ttl_s, *raws]


def _pack(conn: Any, command: tuple[Any, ...]) -> Any:
    """A command in RESP. With hiredis (a dependency, through redis[hiredis]) this skips
    redis-py's per-argument type check, a tenth of the client's time in a bulk enqueue; the
    arguments are only str, bytes and int here."""
    if not HIREDIS_AVAILABLE:
        return conn.pack_command(*command)
    return [hiredis_pack(command)]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _parse_fetch(reply: list[Any]) -> list[Fetched] | None:
    """fetch.lua's reply (see its header): None when the worker holds no lease."""
    if not reply:
        return []
    token = int(reply[0])
    if token == -1:
        return None
    out = []
    i, end = 1, len(reply)
    while i < end:
        queue, count = reply[i].decode(), int(reply[i + 1])
        i += 2
        for raw in reply[i : i + count]:
            token += 1
            out.append(Fetched(str(token), queue, raw))
        i += count
    return out


class SyncBroker:
    """Blocking Redis access for clients, the CLI, the admin facade and the heartbeat thread."""

    def __init__(self, url: str, settings: Settings | None = None, namespace: str = "") -> None:
        self.url = url
        self.settings = settings or Settings()
        self.keys = Keys(namespace or self.settings.namespace)
        # Typed Any: redis-py's stubs give unions of bytes/str and sync/async replies, while
        # these clients always answer bytes (decode_responses=False).
        self.redis: Any = redis.Redis.from_url(
            url, **_connection_kwargs(self.settings, blocking_s=self.settings.wait_aof_s))
        self._args = _Args(self.keys, self.settings)
        self.scripts = {name: self.redis.register_script(source(name)) for name in SCRIPT_NAMES}
        self._aof_checked = False

    def close(self) -> None:
        self.redis.close()

    def _ensure_aof(self) -> None:
        """With ``wait_aof_s``: once, before the first enqueue (see ``check_wait_aof``)."""
        if not self._aof_checked:
            check_wait_aof(self.redis, self.url)
            self._aof_checked = True

    def _run(self, name: str, keys: list[str], args: list[Any], client: Any = None) -> Any:
        try:
            return self.scripts[name](keys=keys, args=args, client=client)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BrokerError(f"cannot reach Redis at {self.url}: {exc}") from exc
        except redis.ResponseError as exc:
            raise _full_or(exc, self.url) from exc

    def enqueue(self, items: Sequence[EnqueueItem]) -> tuple[int, int]:
        """Push jobs in chunks, all chunks in one round trip."""
        pushed = self.push(items)
        return pushed.enqueued, pushed.scheduled

    def push(self, items: Sequence[EnqueueItem]) -> Pushed:
        """Push jobs (in chunks of ENQUEUE_CHUNK, one round trip) and report duplicates
        refused by unique locks."""
        if len(items) <= ENQUEUE_CHUNK:
            pushed = Pushed()
            pushed.add(self._stream("enqueue", [self._args.enqueue(items)])[0], 0)
            return pushed
        return self.push_chunks(items[i : i + ENQUEUE_CHUNK]
                                for i in range(0, len(items), ENQUEUE_CHUNK))

    def push_chunks(self, chunks: Iterable[Sequence[EnqueueItem]]) -> Pushed:
        """Push jobs a chunk per script call, sending each chunk as soon as the iterator gives
        it (so Redis runs one while the caller encodes the next), all in one round trip."""
        pushed = Pushed()
        offsets: list[int] = []

        def calls() -> Iterator[tuple[list[str], list[Any]]]:
            offset = 0
            for chunk in chunks:
                offsets.append(offset)
                offset += len(chunk)
                yield self._args.enqueue(chunk)

        for offset, reply in zip(offsets, self._stream("enqueue", calls()), strict=True):
            pushed.add(reply, offset)
        return pushed

    def _stream(self, name: str, calls: Iterable[tuple[list[str], list[Any]]]) -> list[Any]:
        """Run one script once per call in one round trip, sending each call as soon as it is
        made: Redis runs a chunk while the caller builds the next one. The replies are read
        once all calls are sent (they are a few bytes each, so neither side waits on the other
        before that). Plain EVALSHA, as redis-py's pipelined ``Script`` objects first ask
        SCRIPT EXISTS in a round trip of their own. A call answered NOSCRIPT did not run, so
        after loading the script only those calls are sent again, in their order.

        This is also the single enqueue's path: working on the pooled connection directly
        skips redis-py's ``execute_command`` machinery (retry wrapper, observability hooks,
        per-argument checks), a third of a single enqueue's client instructions (cachegrind:
        262k to 177k; a redis-py PING is 135k). Like redis-py, a connection found broken
        when the first call is sent is reconnected and that call sent again; an error after
        that is a BrokerError, since the caller cannot know which calls ran."""
        script = self.scripts[name]
        wait_aof = name == "enqueue" and self.settings.wait_aof_s > 0
        if wait_aof:
            self._ensure_aof()
        sent: list[tuple[list[str], list[Any]]] = []

        def commands() -> Iterator[tuple[Any, ...]]:
            for keys, args in calls:
                sent.append((keys, args))
                yield ("EVALSHA", script.sha, len(keys), *keys, *args)
            if wait_aof and sent:  # on the same connection: it waits for this client's writes
                yield _wait_aof_command(self.settings)

        replies = self._send_all(commands())
        aof_replies = [replies.pop()] if wait_aof and sent else []
        again = [i for i, r in enumerate(replies) if isinstance(r, redis.exceptions.NoScriptError)]
        if again:  # those did not run: send them again (with a WAITAOF of their own)
            retried, aof_again = self._stream_again(script, [sent[i] for i in again], wait_aof)
            for i, reply in zip(again, retried, strict=True):
                replies[i] = reply
            aof_replies = [aof_again] if len(again) == len(sent) else [*aof_replies, aof_again]
        for reply in replies:
            if isinstance(reply, redis.ResponseError):
                raise _full_or(reply, self.url) from reply
        if wait_aof and sent:
            for aof in aof_replies:
                _check_waitaof_reply(aof, self.settings, self.url)
        return replies

    def _send_all(self, commands: Iterable[tuple[Any, ...]]) -> list[Any]:
        """Send each command on one pooled connection as it comes, then read every reply
        (Redis errors as values). A connection found broken at the first send is reconnected
        once; a failure after that is a BrokerError and the connection is dropped."""
        pool = self.redis.connection_pool
        try:
            conn = pool.get_connection()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BrokerError(f"cannot reach Redis at {self.url}: {exc}") from exc
        replies: list[Any] = []
        try:
            n = 0
            for command in commands:
                packed = _pack(conn, command)
                try:
                    conn.send_packed_command(packed)
                except (redis.ConnectionError, redis.TimeoutError):
                    if n:
                        raise
                    conn.disconnect()  # a stale connection: reconnect (in the send) once
                    conn.send_packed_command(packed)
                n += 1
            for _ in range(n):
                try:
                    replies.append(conn.read_response())
                except redis.ResponseError as exc:
                    replies.append(exc)
        except BaseException as exc:
            conn.disconnect()  # replies may still be on their way: the connection is spent
            if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
                raise BrokerError(f"cannot reach Redis at {self.url}: {exc}") from exc
            raise
        finally:
            pool.release(conn)
        return replies

    def _stream_again(self, script: Any, calls: list[tuple[list[str], list[Any]]],
                      wait_aof: bool) -> tuple[list[Any], Any]:
        """Load the script and send ``calls`` again (with their own WAITAOF when asked)."""
        try:
            script.sha = self.redis.script_load(script.script)
            pipe = self.redis.pipeline(transaction=False)
            for keys, args in calls:
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            if wait_aof:
                pipe.execute_command(*_wait_aof_command(self.settings))
            replies: list[Any] = pipe.execute(raise_on_error=False)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BrokerError(f"cannot reach Redis at {self.url}: {exc}") from exc
        if wait_aof:
            return replies[:-1], replies[-1]
        return replies, None

    def script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run one of the Lua scripts by name (the flow-control modules use this)."""
        return self._run(name, keys, args)

    def register(self, wid: str, info: bytes) -> None:
        self._run("register", [self.keys.leases, self.keys.workers, self.keys.worker_info],
                  [wid, int(self.settings.lease_ttl_s * 1000), info])

    def renew(self, wid: str) -> bool:
        return bool(self._run("renew", [self.keys.leases],
                              [wid, int(self.settings.lease_ttl_s * 1000)]))

    def fetch(self, wid: str, queues: Sequence[str], count: int) -> list[Fetched] | None:
        return _parse_fetch(self._run("fetch", *self._args.fetch(wid, queues, count)))

    def ack(self, wid: str, done: Sequence[tuple[str, str, bytes]]) -> list[str]:
        return [r.decode() for r in self._run("ack", *self._args.ack(wid, done))]

    def fail(self, wid: str, failure: Failure) -> bool:
        return bool(self._run("fail", *self._args.fail(wid, failure)))

    def recover_expired(self) -> tuple[int, int, int]:
        w, j, q = self._run("recover", *self._args.recover("expired"))
        return int(w), int(j), int(q)

    def release(self, wid: str) -> int:
        """Hand every job this worker holds back to its queue and drop its lease (clean exit)."""
        _, jobs, _ = self._run("recover", *self._args.recover("release", wid))
        return int(jobs)

    def promote(self, source_key: str, limit: int) -> tuple[int, bool]:
        moved, more = self._run("promote", *self._args.promote(source_key, limit))
        return int(moved), bool(more)

    def bury(self, entry: bytes, dead_raw: bytes, jid: str, error_class: str, msg: str) -> bool:
        return bool(self._run("bury", *self._args.bury(entry, dead_raw, jid, error_class, msg)))

    def requeue(self, source_key: str, raws: Sequence[bytes]) -> int:
        if not raws:
            return 0
        return int(self._run("requeue", *self._args.requeue(source_key, raws)))

    def cancel(self, jid: str) -> str:
        prev = self._run("cancel", [self.keys.job(jid)], [self.settings.status_ttl_s])
        return prev.decode() if isinstance(prev, bytes) else str(prev or "")

    def status(self, jid: str) -> dict[str, str]:
        raw = self.redis.hgetall(self.keys.job(jid))
        return {k.decode(): v.decode("utf-8", "replace") for k, v in raw.items()}

    def statuses(self, jids: Iterable[str]) -> list[str | None]:
        """The state of each job (None when unknown), in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for jid in jids:
            pipe.hget(self.keys.job(jid), "state")
        return [s.decode() if s else None for s in pipe.execute()]

    def cancelled(self, jids: Sequence[str]) -> list[str]:
        """Which of these jobs were cancelled, in one call (``cancelled.lua``)."""
        if not jids:
            return []
        reply = self._run("cancelled", [], [self.keys.status_prefix, *jids])
        return [_text(jid) for jid in reply]


class AsyncBroker:
    """asyncio Redis access for the worker's orchestrator (one instance per event loop)."""

    def __init__(self, url: str, settings: Settings | None = None, namespace: str = "",
                 max_connections: int = 64) -> None:
        self.url = url
        self.settings = settings or Settings()
        self.keys = Keys(namespace or self.settings.namespace)
        self.redis: Any = aioredis.Redis.from_url(
            url, max_connections=max_connections,
            **_connection_kwargs(self.settings, blocking_s=max(self.settings.idle_block_s,
                                                              self.settings.wait_aof_s))
        )
        self._args = _Args(self.keys, self.settings)
        self.scripts = {name: self.redis.register_script(source(name)) for name in SCRIPT_NAMES}
        self.loop = asyncio.get_running_loop()
        self._aof_checked = False

    async def _ensure_aof(self) -> None:
        """As ``SyncBroker._ensure_aof``, on a short-lived connection of its own."""
        if self._aof_checked:
            return
        client = redis.Redis.from_url(self.url, **_connection_kwargs(self.settings))
        try:
            await asyncio.to_thread(check_wait_aof, client, self.url)
        finally:
            client.close()
        self._aof_checked = True

    async def close(self) -> None:
        await self.redis.aclose()

    async def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self.scripts[name](keys=keys, args=args)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BrokerError(f"cannot reach Redis at {self.url}: {exc}") from exc
        except redis.ResponseError as exc:
            raise _full_or(exc, self.url) from exc

    async def enqueue(self, items: Sequence[EnqueueItem]) -> tuple[int, int]:
        pushed = await self.push(items)
        return pushed.enqueued, pushed.scheduled

    async def push(self, items: Sequence[EnqueueItem]) -> Pushed:
        """Push jobs in chunks (one round trip) and report duplicates refused by unique locks."""
        pushed = Pushed()
        if len(items) <= ENQUEUE_CHUNK and not self.settings.wait_aof_s:
            pushed.add(await self._run("enqueue", *self._args.enqueue(items)), 0)
            return pushed
        calls = [self._args.enqueue(items[i : i + ENQUEUE_CHUNK])
                 for i in range(0, len(items), ENQUEUE_CHUNK)]
        for n, reply in enumerate(await self._pipelined("enqueue", calls)):
            pushed.add(reply, n * ENQUEUE_CHUNK)
        return pushed

    async def _pipelined(self, name: str,
                         calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        """One script call per item of ``calls``, pipelined in one round trip (plain EVALSHA,
        as in ``SyncBroker._stream``); calls answered NOSCRIPT are sent again once loaded.
        Enqueues with ``wait_aof_s`` end each pipeline with a WAITAOF (same connection)."""
        script = self.scripts[name]
        wait_aof = name == "enqueue" and self.settings.wait_aof_s > 0
        if wait_aof:
            await self._ensure_aof()
        aof_replies: list[Any] = []
        todo = list(range(len(calls)))
        replies: list[Any] = [None] * len(calls)
        try:
            for attempt in range(2):
                pipe = self.redis.pipeline(transaction=False)
                for i in todo:
                    keys, args = calls[i]
                    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                if wait_aof:
                    pipe.execute_command(*_wait_aof_command(self.settings))
                answers = await pipe.execute(raise_on_error=False)
                if wait_aof:
                    aof_replies.append(answers.pop())
                for i, reply in zip(todo, answers, strict=True):
                    replies[i] = reply
                todo = [i for i in todo if isinstance(replies[i], redis.exceptions.NoScriptError)]
                if not todo or attempt:
                    break
                script.sha = await self.redis.script_load(script.script)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BrokerError(f"cannot reach Redis at {self.url}: {exc}") from exc
        for reply in replies:
            if isinstance(reply, redis.ResponseError):
                raise _full_or(reply, self.url) from reply
        for aof in aof_replies:
            _check_waitaof_reply(aof, self.settings, self.url)
        return replies

    async def script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run one of the Lua scripts by name (the flow-control modules use this)."""
        return await self._run(name, keys, args)

    async def fetch(self, wid: str, queues: Sequence[str], count: int) -> list[Fetched] | None:
        return _parse_fetch(await self._run("fetch", *self._args.fetch(wid, queues, count)))

    async def claim(self, wid: str, queue: str, timeout_s: float) -> bool:
        """Block until a job arrives in ``queue`` and move it into this worker's claim list."""
        try:
            moved = await self.redis.execute_command(
                "BLMOVE", self.keys.queue(queue), self.keys.claim(wid, queue), "RIGHT", "LEFT",
                timeout_s)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BrokerError(f"cannot reach Redis at {self.url}: {exc}") from exc
        return moved is not None

    async def ack(self, wid: str, done: Sequence[tuple[str, str, bytes]]) -> list[str]:
        return [r.decode() for r in await self._run("ack", *self._args.ack(wid, done))]

    async def fail(self, wid: str, failure: Failure) -> bool:
        return bool(await self._run("fail", *self._args.fail(wid, failure)))

    async def count_loss(self, jid: str) -> int:
        """Count one more lost worker for job ``jid`` (the counter ``recover.lua`` keeps for
        lease recoveries, with the same window); return the new count."""
        key = self.keys.recoveries(jid)
        try:
            pipe = self.redis.pipeline(transaction=True)
            pipe.incr(key)
            pipe.expire(key, RECOVERIES_WINDOW_S)
            count, _ = await pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BrokerError(f"cannot reach Redis at {self.url}: {exc}") from exc
        return int(count)

    async def promote(self, source_key: str, limit: int) -> tuple[int, bool]:
        moved, more = await self._run("promote", *self._args.promote(source_key, limit))
        return int(moved), bool(more)

    async def recover_expired(self) -> tuple[int, int, int]:
        w, j, q = await self._run("recover", *self._args.recover("expired"))
        return int(w), int(j), int(q)

    async def hand_back(self, wid: str, token: str, queue: str) -> bool:
        """Put an in-flight job back at the front of ``queue`` untouched (no handler here)."""
        keys = [self.keys.inflight(wid), self.keys.queue(queue)]
        return bool(await self._run("hand_back", keys, [token]))

    async def bury(self, entry: bytes, dead_raw: bytes, jid: str, error_class: str,
                   msg: str) -> bool:
        keys, args = self._args.bury(entry, dead_raw, jid, error_class, msg)
        return bool(await self._run("bury", keys, args))
