"""Reading one value of a candidate, the same way wherever it is read (caller or writer)."""

from __future__ import annotations

import math
from typing import Any


def read_field(item: object, name: str) -> object:
    """`name` from a dict key, an attribute, or a pydantic/dataclass field; None when absent
    or when the object refuses (a property that raises never reaches the user's pipeline)."""
    if isinstance(item, dict):
        return item.get(name)
    try:
        return getattr(item, name, None)
    except Exception:
        return None


def to_float(value: object) -> float | None:
    """A score as a float (NaN and infinities kept); None for null, bools, text, bytes and
    whatever `float()` refuses."""
    if value is None or isinstance(value, bool | str | bytes):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except Exception:
        return None


def finite_float(value: object) -> float | None:
    """`to_float`, with NaN and infinities as None too."""
    result = to_float(value)
    return result if result is not None and math.isfinite(result) else None


def escape_surrogates(value: Any) -> Any:
    """A string with lone surrogates (which UTF-8 cannot encode) escaped as `\\udXXX`;
    anything else as it is. Escaping keeps distinct ids distinct."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value
