"""Small rich renderables and number formats for live terminal views.

Everything here is a pure function of its arguments, so views built from them can be rendered
to text with ``Console(file=io.StringIO())`` and asserted on.
"""

from __future__ import annotations

from rich.text import Text

BAR_WIDTH = 20
SPARK = " ▁▂▃▄▅▆▇█"
# fill ratios at which a queue bar turns from green to yellow to red: a queue near full means
# the stage after it is the one holding the flow back
WARN_FILL = 0.5
FULL_FILL = 0.9


def fill_bar(used: float, capacity: float, width: int = BAR_WIDTH) -> Text:
    """``█████·····`` with a colour by how full it is (green, yellow from half, red near full)."""
    ratio = 0.0 if capacity <= 0 else max(0.0, min(1.0, used / capacity))
    filled = round(ratio * width)
    if used > 0 and filled == 0:
        filled = 1  # an occupied queue never looks empty
    style = "red" if ratio >= FULL_FILL else "yellow" if ratio >= WARN_FILL else "green"
    return Text("█" * filled, style=style) + Text("·" * (width - filled), style="dim")


def queue_gauge(used: int, capacity: int, peak: int, width: int = BAR_WIDTH) -> Text:
    """A fill bar followed by ``used/capacity`` and the peak."""
    text = fill_bar(used, capacity, width)
    text.append(f" {used:>{len(str(capacity))}}/{capacity}")
    text.append(f" peak {peak}", style="dim")
    return text


def sparkline(values: list[float], width: int) -> str:
    """The last ``width`` values as block characters scaled to their maximum."""
    values = values[-width:]
    top = max(values, default=0.0)
    if top <= 0:
        return SPARK[1] * len(values)
    steps = len(SPARK) - 1
    return "".join(SPARK[max(1, round(v / top * steps))] if v > 0 else SPARK[1] for v in values)


def human_count(n: float) -> str:
    """1234 -> ``1.2k``, 5_600_000 -> ``5.6M``."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= limit:
            return f"{n / limit:.1f}{suffix}"
    return f"{n:.0f}" if float(n).is_integer() else f"{n:.1f}"


def human_rate(per_s: float) -> str:
    return f"{human_count(per_s)}/s"


def human_ms(ms: float | None) -> str:
    """Milliseconds in the unit that reads best: ``850µs``, ``12.3ms``, ``4.1s``; ``-`` if none."""
    if ms is None:
        return "-"
    if ms < 1:
        return f"{ms * 1000:.0f}µs"
    if ms < 1000:
        return f"{ms:.1f}ms"
    return f"{ms / 1000:.1f}s"


def human_seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f}s"
    minutes, seconds = divmod(int(s), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
