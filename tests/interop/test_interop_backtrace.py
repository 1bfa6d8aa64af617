"""``error_backtrace`` byte for byte: Conveyor's compression against Sidekiq 6.4.1's own code.

Sidekiq's ``JobRetry#compress_backtrace`` is ``Base64.encode64(Zlib::Deflate.deflate(
Sidekiq.dump_json(frames)))``. The driver runs that very method (``compress_backtrace``
command) on the same frames as :func:`conveyor.retry.compress_backtrace`, and the two strings
must be equal: the Web UI deletes and retries an entry by its exact bytes, and an entry with
our backtrace must be indistinguishable from one Ruby wrote.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

import pytest

from conveyor.executors.base import format_backtrace
from conveyor.retry import compress_backtrace, decide, decompress_backtrace

pytestmark = pytest.mark.interop

RUBY_BASE64_INPUT_BYTES = 45  # Base64.encode64 puts 45 input bytes (60 characters) on a line


def _raise_deep(depth: int) -> None:
    if depth:
        _raise_deep(depth - 1)
    raise RuntimeError("boom")


def python_frames() -> list[str]:
    """Frames of a real Python failure, as the executors format them for a retry entry."""
    try:
        _raise_deep(5)
    except RuntimeError as exc:
        return format_backtrace(exc)
    raise AssertionError("unreachable")


def frames_deflating_to(residue: int) -> list[str]:
    """Frames whose deflated JSON is ``residue`` bytes past a multiple of 45, so that Ruby's
    last Base64 line is full (residue 0) or short by a chosen amount: the line-break edges."""
    for n in range(1, 5000):
        frames = [f"app/jobs/job_{i}.py:{i * 7}:in `step_{i}'" for i in range(n % 40 + 1)]
        frames.append(f"app/worker.py:{n}:in `run'")
        packed = zlib.compress(json.dumps(frames, separators=(",", ":")).encode())
        if len(packed) % RUBY_BASE64_INPUT_BYTES == residue:
            return frames
    raise AssertionError(f"no frames deflate to residue {residue}")


CASES: dict[str, list[str]] = {
    "python traceback": python_frames(),
    "one frame": ["/srv/app/jobs.py:12:in `perform'"],
    "no frames": [],
    "one empty frame": [""],
    "unicode": ["/srv/ünïcödé/käse.py:1:in `grüße'", "中文/路径.py:2:in `函数'",
                "emoji/😀.py:3:in `f'"],
    "escapes": ["tab\there", "quote\" backslash\\ slash/", "nul\u0000 esc\u001b us\u001f",
                "del\u007f", "line\u2028para\u2029", "crlf\r\n", "bell\u0007 bs\b ff\f"],
    "many long frames": [f"/very/long/path/{'segment/' * 30}module_{i}.py:{i}:in `f{i}'"
                         for i in range(200)],
    "incompressible": [base64.b64encode(bytes(range(256)) * 4).decode()],
    **{f"deflated length {r} mod 45": frames_deflating_to(r) for r in (0, 1, 44)},
}


def test_error_backtrace_is_byte_identical_to_sidekiq_compress_backtrace(ruby: Any) -> None:
    names = list(CASES)
    from_ruby = ruby("compress_backtrace", [CASES[n] for n in names])
    for name, ruby_value in zip(names, from_ruby, strict=True):
        ours = compress_backtrace(CASES[name])
        assert ours == ruby_value, name
        assert decompress_backtrace(ruby_value) == CASES[name], name


def test_a_frame_from_a_non_utf8_path_still_gives_a_retry_entry() -> None:
    """Regression: a frame whose file path held bytes that are not UTF-8 (a lone surrogate in
    Python) made ``compress_backtrace`` raise UnicodeEncodeError, so the failed job got no
    retry entry at all; now the bad character becomes ``?`` as in error messages."""
    raw = json.dumps({"class": "X", "jid": "a" * 24, "queue": "py", "args": [],
                      "retry": 1, "backtrace": True}).encode()
    frames = ["/srv/caf\udce9/job.py:3:in `perform'", "/srv/ok.py:1:in `run'"]
    decision = decide(raw, "py", "RuntimeError", "boom", frames)
    entry = json.loads(decision.raw)
    assert decision.mode == "retry"
    assert decompress_backtrace(entry["error_backtrace"]) == ["/srv/caf?/job.py:3:in `perform'",
                                                             "/srv/ok.py:1:in `run'"]
