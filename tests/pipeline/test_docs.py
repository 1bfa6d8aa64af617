"""Every ``python`` block in docs/pipelines.md runs, as its own program, and succeeds."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "pipelines.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
RUN_TIMEOUT_S = 60


def blocks() -> list[str]:
    return BLOCK.findall(DOC.read_text())


def test_the_guide_has_runnable_examples() -> None:
    assert len(blocks()) >= 10


@pytest.mark.parametrize("index", range(len(blocks())))
def test_example_runs(index: int, tmp_path: Path) -> None:
    code = blocks()[index]
    script = tmp_path / f"example_{index}.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"example {index} failed:\n{code}\n{done.stderr[-3000:]}"
