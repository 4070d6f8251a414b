"""How a value reads to people in a table cell: shared by the CLI's tables and the web view.

Each front end keeps its own rule for what differs (thousands separators on small ints,
how a dict or a list is shown); what is the same lives here.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime


def scalar_text(value: object) -> str | None:
    """'' for null, true/false, short floats, UTC times to the second; None for any other
    value (ints, containers, text: the caller's rule)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.4g}"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return None


def percent(ratio: float | None) -> str:
    """A ratio as a percentage with one decimal (`0.9613` -> `96.1%`); '' for null."""
    return "" if ratio is None else f"{ratio:.1%}"


def ms_figure(ms: float) -> str:
    """A duration in ms with two decimals, so a column of them lines up: `8.76`, `0.03`,
    `1,204.50`; `<0.01` for a positive one that would print as zero."""
    return "<0.01" if 0 < ms < 0.005 else f"{ms:,.2f}"


def duration(ms: float) -> str:
    """A duration for people, two decimals whatever its size: 0.03 ms, 8.76 ms, 1.24 s,
    3 min 05 s."""
    if ms < 1000:
        return f"{ms_figure(ms)} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    minutes, seconds = divmod(round(ms / 1000), 60)
    return f"{minutes} min {seconds:02d} s"
