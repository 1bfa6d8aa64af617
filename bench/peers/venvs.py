"""Peer environments: one venv per peer under VENV_ROOT, created from ``pins.txt`` when missing.

A venv carries a stamp with the pins it was built from; a changed pin rebuilds it. The exact
versions installed (``pip freeze``) are recorded with every run. Sidekiq comes from Debian
(``ruby-sidekiq``, 6.4.1); it is installed with apt-get when missing and we are root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
PINS = HERE / "pins.txt"
VENV_ROOT = Path(os.environ.get("BENCH_VENVS", "/tmp/bench-venvs"))
STAMP = ".bench-pins"
PIP_TIMEOUT_S = 900
SIDEKIQ_VERSION = "6.4.1"
DEBIAN_PACKAGES = ["ruby", "ruby-sidekiq"]
CONVEYOR_DISTS = ["conveyor", "redis", "hiredis", "orjson", "uvloop"]


def pins() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in PINS.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, reqs = line.partition(":")
            out[name.strip()] = reqs.split()
    return out


def ensure(peer: str, log: Path) -> Path:
    """The python of ``peer``'s venv, building the venv first if it is missing or stale."""
    reqs = pins()[peer]
    venv = VENV_ROOT / peer
    python = venv / "bin" / "python"
    stamp = venv / STAMP
    if python.exists() and stamp.exists() and stamp.read_text() == " ".join(reqs):
        return python
    shutil.rmtree(venv, ignore_errors=True)
    VENV_ROOT.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, stdout=out,
                       stderr=subprocess.STDOUT)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *reqs], check=True,
                       stdout=out, stderr=subprocess.STDOUT, timeout=PIP_TIMEOUT_S)
    stamp.write_text(" ".join(reqs))
    return python


def frozen(python: Path) -> dict[str, str]:
    out = subprocess.run([str(python), "-m", "pip", "freeze", "--all"], capture_output=True,
                         text=True, check=True).stdout
    return dict(line.split("==", 1) for line in out.splitlines() if "==" in line)


def conveyor_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for dist in CONVEYOR_DISTS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def sidekiq_versions() -> dict[str, str] | None:
    """Ruby, Sidekiq and redis-rb versions, or None when Sidekiq 6.4.1 cannot be loaded."""
    code = ('require "sidekiq"; require "json"; print JSON.generate({"ruby" => RUBY_VERSION, '
            '"sidekiq" => Sidekiq::VERSION, "redis-rb" => Redis::VERSION})')
    if shutil.which("ruby") is None:
        return None
    out = subprocess.run(["ruby", "-e", code], capture_output=True, text=True)
    if out.returncode != 0:
        return None
    found: dict[str, str] = json.loads(out.stdout)
    return found if found.get("sidekiq") == SIDEKIQ_VERSION else None


def ensure_sidekiq(log: Path) -> dict[str, str] | None:
    found = sidekiq_versions()
    if found is not None or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return found
    with open(log, "ab") as out:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], stdout=out, stderr=subprocess.STDOUT,
                       env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                        *DEBIAN_PACKAGES], stdout=out, stderr=subprocess.STDOUT, env=env)
    return sidekiq_versions()
