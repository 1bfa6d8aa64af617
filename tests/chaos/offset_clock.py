"""Run a Python module with its wall clock shifted: ``python -m chaos.offset_clock SECONDS -m MOD
ARGS...``.

``time.time`` and ``time.time_ns`` are offset by SECONDS before MOD runs, which is what a host
whose clock is wrong looks like to Python code (the monotonic clock, used for durations, is left
alone, as NTP leaves it alone). It stands in for libfaketime, which CI machines do not have.
"""

from __future__ import annotations

import runpy
import sys
import time


def main(argv: list[str]) -> None:
    offset_s, flag, module, *rest = argv
    if flag != "-m":
        raise SystemExit("usage: python -m chaos.offset_clock SECONDS -m MODULE [ARGS...]")
    offset = float(offset_s)
    real_time, real_time_ns = time.time, time.time_ns
    time.time = lambda: real_time() + offset  # type: ignore[assignment]
    time.time_ns = lambda: real_time_ns() + int(offset * 1e9)  # type: ignore[assignment]
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
