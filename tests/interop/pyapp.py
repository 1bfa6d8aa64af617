"""The Conveyor app that the interop suite runs as a separate worker process (to SIGKILL it).

``PySleepJob`` records when it starts and ends in the Redis list ``interop:py``.
"""

from __future__ import annotations

import json
import os
import time

import redis

from conveyor import App, current_job

app = App()
_redis = redis.Redis.from_url(os.environ["CONVEYOR_REDIS_URL"])


@app.job(name="PySleepJob", queue="py")
def py_sleep(seconds: float) -> None:
    jid = current_job().jid
    _redis.rpush("interop:py", json.dumps({"jid": jid, "phase": "start", "pid": os.getpid()}))
    time.sleep(seconds)
    _redis.rpush("interop:py", json.dumps({"jid": jid, "phase": "end", "pid": os.getpid()}))
