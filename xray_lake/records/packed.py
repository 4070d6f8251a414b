"""Candidate lists packed into one JSON blob on the caller's thread, unpacked on the writer's.

Why a blob: the snapshot must be taken on the caller's thread when the stage returns, and one
`orjson.dumps` of the whole list is the cheapest snapshot we measured. It is as fast as one
`dict.copy` per candidate at the median, but creates no objects for the cyclic GC to scan
(the copies cost more on average once GC is counted: benchmarks/RESULTS.md), holds 1
compact bytes object per stage instead of thousands of dicts, and freezes nested values
too, not just top-level fields.

Items are interleaved with a sentinel string so the writer can split the blob into one JSON
text per candidate (`bytes.split` into Arrow buffers) instead of re-encoding each candidate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import attrgetter

import orjson

from xray_lake.records.convert import jsonable
from xray_lake.records.results import Filtered, Generated, Scored

SENTINEL = "\x00xray-lake\x01"
SEPARATOR = b',"\\u0000xray-lake\\u0001",'
JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_UTC_Z


def pack(items: Sequence[object]) -> bytes | None:
    """One JSON blob of `items` with sentinels between them; None if orjson cannot encode them
    (cycles, huge ints, odd keys): the caller then falls back to shallow copies."""
    n = len(items)
    if n == 0:
        return b"[]"
    spaced: list[object] = [SENTINEL] * (2 * n - 1)
    spaced[::2] = items
    try:
        return orjson.dumps(spaced, default=jsonable, option=JSON_OPTIONS)
    except Exception:
        return None


# The fields each result helper adds to its item, in the order `pack_helpers` writes them.
HELPER_FIELDS: dict[type, tuple[str, ...]] = {
    Filtered: ("passed", "reason_label", "reason_text"),
    Scored: ("score",),
    Generated: ("reason",),
}
_GETTERS: dict[type, tuple[Callable[[object], object], ...]] = {
    helper: tuple(map(attrgetter, names)) for helper, names in HELPER_FIELDS.items()
}


def pack_helpers(result: Sequence[object], helper: type) -> tuple[list[object], bytes, bytes] | None:
    """(items, blob of the items, blob of the helpers' fields) for a list of `helper` only.

    Packed apart because orjson's dataclass path is much slower than plain lists, and the
    items blob splits into one JSON text per item in Arrow, as a plain list does. The fields
    are packed a column per field (no tuple per candidate for the GC to track). None (then
    `pack(result)`) for mixed lists or values orjson cannot encode.
    """
    if set(map(type, result)) != {helper}:
        return None
    items = [x.item for x in result]  # type: ignore[attr-defined]
    blob = pack(items)
    if blob is None:
        return None
    try:
        fields = orjson.dumps([list(map(get, result)) for get in _GETTERS[helper]],
                              default=jsonable, option=JSON_OPTIONS)
    except Exception:
        return None
    return items, blob, fields
