"""Copy-on-write: a ``forks`` stage reading a large table loaded before the run shares its
pages with the parent instead of copying them (measured from /proc/<pid>/smaps_rollup)."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from conveyor.pipeline import Pipeline

TABLE_MB = 64
TABLE: bytes = b""  # loaded by the test, before the run, as an app would at import time


def memory_kb() -> dict[str, int]:
    fields: dict[str, int] = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[-1] == "kB":
            fields[key] = int(parts[0])
    return fields


def read_table(item: int) -> dict[str, Any]:
    digest = hashlib.sha256(TABLE).hexdigest()  # touches every page of the table
    mem = memory_kb()
    return {
        "pid": os.getpid(),
        "digest": digest,
        "rss_kb": mem["Rss"],
        "shared_kb": mem["Shared_Clean"] + mem["Shared_Dirty"],
        "private_kb": mem["Private_Clean"] + mem["Private_Dirty"],
    }


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc smaps (Linux)")
def test_forks_share_a_large_table_copy_on_write() -> None:
    global TABLE
    TABLE = os.urandom(TABLE_MB * 1024 * 1024)
    try:
        pipe = Pipeline()
        pipe.processor(read_table, name="lookup", forks=2, chunk_size=1)
        result = pipe.run(range(4), collect=True)
    finally:
        expected = hashlib.sha256(TABLE).hexdigest()
        TABLE = b""
    table_kb = TABLE_MB * 1024
    assert len({r["pid"] for r in result.outputs}) == 4  # a fresh fork per item
    for r in result.outputs:
        assert r["digest"] == expected
        assert r["rss_kb"] >= table_kb  # the whole table was read in the child...
        assert r["shared_kb"] >= 0.9 * table_kb  # ...from pages shared with the parent
        assert r["private_kb"] < 0.25 * table_kb, r
