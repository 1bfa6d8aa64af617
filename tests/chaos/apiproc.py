"""The REST API as a process of its own, so scenarios can cut its Redis off or kill it.

``python -m chaos.apiproc REDIS_URL PORT DEADLINE_S TOKEN...`` serves the API the way
``conveyor.api.server.make_server`` builds it (uvicorn with the receive-deadline protocol);
:class:`ApiProc` starts that as a child of the test and stops (or SIGKILLs) it by its pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .procs import TESTS_DIR

START_TIMEOUT_S = 30.0
ADMIN = "admin:" + "a" * 32
ENQUEUE = "enqueue:" + "e" * 32
READ = "read:" + "r" * 32


def secret(token: str) -> str:
    return token.partition(":")[2]


class ApiProc:
    def __init__(self, redis_url: str, port: int, log_dir: Path, *,
                 deadline_s: float = 15.0, tokens: tuple[str, ...] = (ADMIN, ENQUEUE, READ)
                 ) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_dir / f"api-{port}.log"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH", "")) if p)}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "chaos.apiproc", redis_url, str(port), str(deadline_s),
                 *tokens], env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._up():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start; log:\n{self.log_path.read_text()}")
            time.sleep(0.05)

    def _up(self) -> bool:
        try:
            httpx.get(self.url + "/healthz", timeout=1.0)
        except httpx.HTTPError:
            return False
        return True

    def kill(self) -> None:
        """SIGKILL the API process (by its pid) and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main(argv: list[str]) -> None:
    from conveyor.api.config import ApiConfig, parse_token
    from conveyor.api.server import make_server
    from conveyor.settings import Settings

    from .chaos_app import app

    redis_url, port, deadline, *tokens = argv
    app.settings = Settings(redis_url=redis_url)
    config = ApiConfig(port=int(port), receive_deadline_s=float(deadline),
                       tokens=[parse_token(t) for t in tokens])
    make_server(config, app).run()


if __name__ == "__main__":
    main(sys.argv[1:])
