"""Scenarios 5 (API side), 10 and 11: the REST API under a Redis outage, oversized bodies and
slow clients. Each talks HTTP to an :class:`~chaos.apiproc.ApiProc` from outside.

* :func:`outage`: submissions keep coming while Redis is cut off (blackhole or reset) or
  killed; every answer must come quickly (503 with Retry-After, never a hang), and every job
  answered 201 must be in Redis afterwards.
* :func:`oversized`: declared 10 MB (413 before the body is sent), chunked 10 MB, just over and
  just under the limit; no partial job may reach Redis.
* :func:`slowloris`: connections trickling a request byte by byte must be cut at the receive
  deadline while a probe's normal requests keep being answered quickly.
* :func:`killed`: the API process itself is SIGKILLed while clients submit, and started again
  on its port; every job it answered 2xx for must be in Redis, none twice, and no status record
  may exist without its queue entry (a submission cut off mid-way is all or nothing).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson

from conveyor.job import new_jid

from ..apiproc import ADMIN, ApiProc, secret
from ..results import percentile
from ..rig import Rig

MB = 1024 * 1024
LIMIT_BYTES = MB  # the API's default body limit
CLIENT_TIMEOUT_S = 30.0


def _headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {secret(ADMIN)}"}


def _submit(client: httpx.Client) -> tuple[int, float, str]:
    """POST one job; (status, seconds, job id if created). Status 0: no answer (a hang)."""
    began = time.monotonic()
    try:
        resp = client.post("/api/v1/jobs", json={"type": "work", "args": [new_jid(), 1]})
    except httpx.HTTPError:
        return 0, time.monotonic() - began, ""
    created = resp.json().get("job_id", "") if resp.is_success else ""
    return resp.status_code, time.monotonic() - began, created


def outage(rig: Rig, api: ApiProc, *, fault: Callable[[], None], heal: Callable[[], None],
           outage_s: float) -> dict[str, Any]:
    answers: list[tuple[int, float]] = []
    created: set[str] = set()
    with httpx.Client(base_url=api.url, headers=_headers(), timeout=CLIENT_TIMEOUT_S) as client:
        for _ in range(5):
            created.add(_submit(client)[2])
        fault()
        end = time.monotonic() + outage_s
        while time.monotonic() < end:
            status, took, jid = _submit(client)
            answers.append((status, took))
            created.add(jid)
        heal()
        back = time.monotonic()
        while time.monotonic() - back < 30:
            status, _, jid = _submit(client)
            created.add(jid)
            if jid:
                break
            time.sleep(0.05)
        back_s = time.monotonic() - back
    stored = {raw[raw.index(b'"jid":"') + 7:][:24].decode()
              for raw in rig.r.lrange("queue:default", 0, -1)}
    lat = [t for _, t in answers]
    return {"scenario": "api_outage", "outage_s": outage_s, "answers": len(answers),
            "statuses": dict(Counter(str(s) for s, _ in answers)),
            "latency_s_p50": percentile(lat, 50), "latency_s_max": round(max(lat), 3),
            "hangs": sum(1 for s, _ in answers if s == 0),
            "created": len(created - {""}), "created_missing": len(created - {""} - stored),
            "back_after_heal_s": round(back_s, 2)}


def _raw_request(api: ApiProc, head: bytes, body: Iterator[bytes], read_after: int = 0
                 ) -> tuple[str, float]:
    """Send ``head`` then ``body`` chunks; return the status line and seconds to the answer."""
    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=CLIENT_TIMEOUT_S) as s:
        began = time.monotonic()
        s.sendall(head)
        try:
            for chunk in body:
                s.sendall(chunk)
        except OSError:
            pass  # the server answered and closed before the body was all sent
        line = s.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace")
        return line, time.monotonic() - began


def oversized(rig: Rig, api: ApiProc) -> dict[str, Any]:
    auth = f"Authorization: Bearer {secret(ADMIN)}\r\n".encode()
    base = b"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    before = int(rig.r.llen("queue:default"))
    out: dict[str, Any] = {"scenario": "api_oversized"}
    line, took = _raw_request(api, base + auth + f"Content-Length: {10 * MB}\r\n\r\n".encode(),
                              iter(()))
    out["declared_10mb"] = {"status": line, "seconds": round(took, 3)}
    chunks = (b"%x\r\n%s\r\n" % (64 * 1024, b"x" * 64 * 1024) for _ in range(160))
    line, took = _raw_request(api, base + auth + b"Transfer-Encoding: chunked\r\n\r\n", chunks)
    out["chunked_10mb"] = {"status": line, "seconds": round(took, 3)}
    with httpx.Client(base_url=api.url, headers=_headers(), timeout=CLIENT_TIMEOUT_S) as client:
        for name, size in (("just_over", LIMIT_BYTES + 1), ("just_under", LIMIT_BYTES - 200)):
            head, tail = b'{"type":"work","args":["' + new_jid().encode() + b'",1,"', b'"]}'
            body = head + b"x" * (size - len(head) - len(tail)) + tail
            resp = client.post("/api/v1/jobs", content=body,
                               headers={"Content-Type": "application/json"})
            out[name] = {"status": resp.status_code, "bytes": len(body)}
    out["jobs_created"] = int(rig.r.llen("queue:default")) - before
    return out


def slowloris(api: ApiProc, *, connections: int, trickle_every_s: float, duration_s: float
              ) -> dict[str, Any]:
    host, port = api.url.removeprefix("http://").split(":")
    held: list[float] = []
    lock = threading.Lock()

    def trickle() -> None:
        began = time.monotonic()
        try:
            with socket.create_connection((host, int(port)), timeout=duration_s + 5) as s:
                for byte in b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\n" * 100:
                    s.sendall(bytes([byte]))
                    time.sleep(trickle_every_s)
                    if time.monotonic() - began > duration_s:
                        break
        except OSError:
            pass
        with lock:
            held.append(time.monotonic() - began)

    threads = [threading.Thread(target=trickle, daemon=True) for _ in range(connections)]
    for t in threads:
        t.start()
    probes: list[float] = []
    ok = 0
    end = time.monotonic() + duration_s
    with httpx.Client(base_url=api.url, timeout=5.0) as client:
        while time.monotonic() < end:
            began = time.monotonic()
            with contextlib.suppress(httpx.HTTPError):
                ok += client.get("/healthz").status_code == 200
            probes.append(time.monotonic() - began)
            time.sleep(0.2)
    for t in threads:
        t.join(duration_s + 10)
    return {"scenario": "api_slowloris", "connections": connections,
            "probe_success_rate": round(ok / max(1, len(probes)), 3),
            "probe_s_p99": percentile(probes, 99), "held_s_max": round(max(held), 2),
            "held_s_p50": percentile(held, 50)}


def killed(rig: Rig, start_api: Callable[[], ApiProc], *, kills: int, every_s: float,
           down_s: float, clients: int) -> dict[str, Any]:
    """SIGKILL the API ``kills`` times, ``every_s`` apart, while ``clients`` threads submit jobs
    (each carries its own id as its first argument); restart it after ``down_s``.

    Each submission ends acknowledged (2xx), answered otherwise (a status), refused (no
    connection: nothing was sent) or indeterminate (sent, no answer: the kill came mid-request).
    Afterwards every queue entry is read back by its id."""
    outcomes: dict[str, str] = {}
    lock = threading.Lock()
    stop = threading.Event()
    holder = [start_api()]

    def submit_loop() -> None:
        while not stop.is_set():
            url = holder[0].url
            with httpx.Client(base_url=url, headers=_headers(), timeout=CLIENT_TIMEOUT_S) as c:
                while not stop.is_set():
                    uid = new_jid()
                    try:
                        resp = c.post("/api/v1/jobs", json={"type": "work", "args": [uid, 1]})
                        kind = "acknowledged" if resp.is_success else str(resp.status_code)
                    except httpx.ConnectError:
                        kind = "refused"
                    except httpx.HTTPError:
                        kind = "indeterminate"
                    with lock:
                        outcomes[uid] = kind
                    if kind in ("refused", "indeterminate"):
                        time.sleep(0.02)
                        break  # a new connection for the next one

    threads = [threading.Thread(target=submit_loop, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    back_s: list[float] = []
    try:
        for _ in range(kills):
            time.sleep(every_s)
            holder[0].kill()
            time.sleep(down_s)
            restarted = time.monotonic()
            holder[0] = start_api()  # returns once /healthz answers
            back_s.append(time.monotonic() - restarted)
        time.sleep(every_s)
    finally:
        stop.set()
        for t in threads:
            t.join(CLIENT_TIMEOUT_S + 5)
        holder[0].close()
    stored: Counter[str] = Counter()
    jids: set[str] = set()
    for raw in rig.r.lrange("queue:default", 0, -1):
        job = orjson.loads(raw)
        stored[job["args"][0]] += 1
        jids.add(job["jid"])
    records = {key.decode().removeprefix("conveyor:job:")
               for key in rig.r.scan_iter("conveyor:job:*", count=1000)}
    kinds = Counter(outcomes.values())
    acknowledged = {u for u, k in outcomes.items() if k == "acknowledged"}
    indeterminate = {u for u, k in outcomes.items() if k == "indeterminate"}
    return {"scenario": "api_kill", "kills": kills, "every_s": every_s, "down_s": down_s,
            "clients": clients, "submissions": len(outcomes), "outcomes": dict(kinds),
            "lost": len(acknowledged - set(stored)),
            "duplicated": sum(1 for n in stored.values() if n > 1),
            "unexpected": len(set(stored) - set(outcomes)),
            "refused_stored": sum(1 for u, k in outcomes.items()
                                  if k == "refused" and u in stored),
            "indeterminate_stored": len(indeterminate & set(stored)),
            "records_without_queue_entry": len(records - jids),
            "restart_to_serving_s_max": round(max(back_s), 2) if back_s else None}
