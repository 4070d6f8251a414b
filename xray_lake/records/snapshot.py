"""Shallow copies of candidate lists: the fallback snapshot when a list cannot be packed as JSON.

Top-level fields are frozen at return; nested containers are shared. The normal path is
records/packed.py, which freezes everything and costs the GC nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from xray_lake.records.results import Filtered, Generated, Scored

_copy_dict = dict.copy


def snapshot(items: Sequence[object]) -> list[object]:
    """A list of shallow copies of `items`; never raises (an uncopyable item is kept as is)."""
    if not items:
        return []
    kinds = set(map(type, items))
    if kinds == {dict}:
        return list(map(_copy_dict, items))  # type: ignore[arg-type]
    return [_snapshot_one(item) for item in items]


_IMMUTABLE = (str, int, float, bool, bytes, type(None), tuple, frozenset)


def _snapshot_one(item: object) -> object:
    if isinstance(item, _IMMUTABLE):
        return item
    if isinstance(item, dict):
        return item.copy()
    if isinstance(item, Filtered):
        return Filtered(_snapshot_one(item.item), item.passed, item.reason_label, item.reason_text)
    if isinstance(item, Scored):
        return Scored(_snapshot_one(item.item), item.score)
    if isinstance(item, Generated):
        return Generated(_snapshot_one(item.item), item.reason)
    try:
        return copy.copy(item)
    except Exception:
        return item
