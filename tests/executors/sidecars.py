"""Start and stop real sidecar servers for the tests (Python under uvicorn, Ruby under WEBrick)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).parent
TESTS = HERE.parent
ROOT = TESTS.parent
RUBY_SIDECAR = ROOT / "sidecars" / "ruby" / "bin" / "conveyor-sidecar"
RUBY_JOBS = HERE / "ruby_jobs.rb"
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
HEALTH_POLL_S = 0.05


def python_command(port: int | str = "{port}") -> list[str]:
    return [sys.executable, "-m", "conveyor.sidecar", "--app", "executors.sidecar_app:app",
            "--port", str(port), "--graceful", "2"]


def ruby_command(port: int | str = "{port}") -> list[str]:
    return ["ruby", str(RUBY_SIDECAR), "--port", str(port), "--require", str(RUBY_JOBS)]


SIDECAR_ENV = {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}


def require_ruby() -> None:
    """Skip without Ruby, Rack and WEBrick; fail instead under CI=true (CI installs them)."""
    missing = ""
    if shutil.which("ruby") is None:
        missing = "ruby is not installed"
    else:
        probe = subprocess.run(["ruby", "-e", 'require "rack"; require "webrick"'],
                               capture_output=True, text=True, check=False)
        if probe.returncode:
            missing = f"ruby cannot load rack/webrick: {probe.stderr.strip()[:200]}"
    if missing:
        hint = f"{missing} (apt-get install -y ruby ruby-rack ruby-webrick)"
        if os.environ.get("CI") == "true":
            pytest.fail(hint, pytrace=False)
        pytest.skip(hint)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SidecarServer:
    """A sidecar process started by a test, stopped by its pid."""

    proc: subprocess.Popen[bytes]
    url: str

    @classmethod
    def start(cls, command: list[str], port: int) -> SidecarServer:
        env = {**os.environ, **SIDECAR_ENV}
        proc = subprocess.Popen(command, env=env, start_new_session=True)
        server = cls(proc, f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"sidecar {command} exited with {proc.returncode}")
            try:
                if httpx.get(server.url + "/v1/health").status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            time.sleep(HEALTH_POLL_S)  # polling a condition: the server is not up yet
        server.stop()
        raise RuntimeError(f"sidecar {command} did not become healthy")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
