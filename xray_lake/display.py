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
