"""Ruby end to end: a Ruby app enqueues a Sidekiq job with the real Sidekiq client, a Conveyor
worker fetches it and runs it through the ``http`` executor in the Ruby sidecar it launched
(``sidecars/ruby/``), which runs ``GreetingJob.new.perform(*args)`` (``ruby_jobs.rb``).

Needs Ruby with the ``sidekiq`` gem (Debian's ``ruby-sidekiq``), ``rack`` and ``webrick``:
skipped without them, failed under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import pytest

from conveyor.app import JobSpec
from worker_helpers import fast_app, running_worker, wait_for

from . import sidecars

QUEUE = "ruby_e2e"
PUSH_TIMEOUT_S = 60.0
# The Ruby app's side: Sidekiq's public client, as a Rails app would call it.
PUSH = """
require "sidekiq"
Sidekiq.logger.level = Logger::ERROR
print Sidekiq::Client.push("class" => "GreetingJob", "queue" => ARGV[0],
                           "args" => [ARGV[1], ARGV[2]])
"""


def require_sidekiq() -> None:
    sidecars.require_ruby()
    probe = subprocess.run(["ruby", "-e", 'require "sidekiq"'], capture_output=True, text=True,
                           check=False)
    if probe.returncode:
        hint = f"ruby cannot load sidekiq (apt-get install -y ruby-sidekiq): {probe.stderr[:200]}"
        if os.environ.get("CI") == "true":
            pytest.fail(hint, pytrace=False)
        pytest.skip(hint)


def ruby_push(redis_url: str, name: str, path: pathlib.Path) -> str:
    out = subprocess.run(["ruby", "-e", PUSH, QUEUE, name, str(path)], capture_output=True,
                         text=True, env={**os.environ, "REDIS_URL": redis_url},
                         timeout=PUSH_TIMEOUT_S, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


async def test_a_job_pushed_by_sidekiq_runs_in_the_ruby_sidecar(redis_url: str,
                                                                tmp_path: pathlib.Path) -> None:
    require_sidekiq()
    app = fast_app(redis_url)
    # the Ruby class, by name: Conveyor owns fetching, leases and retries; Ruby runs perform
    app.register(JobSpec(name="GreetingJob", fn=lambda *a: None, executor="http", queue=QUEUE))
    options = {"http": {"command": sidecars.ruby_command(), "env": sidecars.SIDECAR_ENV}}
    effect = tmp_path / "greeting.json"
    jid = ruby_push(redis_url, "ann", effect)
    assert len(jid) == 24  # Sidekiq's jid: 12 random bytes in hex
    async with running_worker(app, concurrency=2, executor_options=options) as worker:
        await wait_for(effect.exists, timeout_s=60, what="the Ruby job's side effect")
        sidecar_pid = worker.executors["http"].supervisor.pid
        await wait_for(lambda: app.client.sync.status(jid).get("state") == "completed",
                       timeout_s=30, what="the job to be acknowledged")
    done = json.loads(effect.read_text())
    assert done == {"greeting": "hello ann", "jid": jid, "class": "GreetingJob",
                    "pid": sidecar_pid}  # new.perform ran in the sidecar, with Sidekiq's jid
    status = app.client.sync.status(jid)
    assert json.loads(status["result"]) == "greeted ann"
    assert status["worker"] == worker.identity and status["attempts"] == "1"
