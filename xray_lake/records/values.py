"""Reading one value of a candidate, the same way wherever it is read (caller or writer)."""

from __future__ import annotations

import math
from typing import Any

_ABSENT = object()


def read_field(item: object, name: str) -> object:
    """`name` from a dict key, an attribute, or a pydantic/dataclass field; None when absent
    or when the object refuses (a property that raises never reaches the user's pipeline).

    A dotted name (`meta.reason`) is a path: each part a dict key, an attribute, or an index
    of a list or tuple (`tags.0`). A key or attribute named with the dots itself wins, so a
    mapping that worked before paths existed reads the same value."""
    value = _step(item, name)
    if value is _ABSENT and "." in name:
        value = item
        for part in name.split("."):
            value = _step(value, part)
            if value is _ABSENT:
                break
    return None if value is _ABSENT else value


def _step(item: object, key: str) -> object:
    """One part of a path: a dict key, a list index, or an attribute; `_ABSENT` when none."""
    if isinstance(item, dict):
        return item.get(key, _ABSENT)
    if isinstance(item, list | tuple) and key.isdigit():
        index = int(key)
        return item[index] if index < len(item) else _ABSENT
    try:
        return getattr(item, key, _ABSENT)
    except Exception:
        return _ABSENT


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
