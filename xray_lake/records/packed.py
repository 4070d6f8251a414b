"""Candidate lists packed into one JSON blob on the caller's thread, unpacked on the writer's.

Why a blob: the snapshot must be taken on the caller's thread when the stage returns, and one
`orjson.dumps` of the whole list is the cheapest snapshot we measured. It is as fast as one
`dict.copy` per candidate at the median, but creates no objects for the cyclic GC to scan
(the copies cost 2-3x more on average once GC is counted), holds 1 compact bytes object per
stage instead of thousands of dicts, and freezes nested values too, not just top-level fields.

Items are interleaved with a sentinel string so the writer can split the blob into one JSON
text per candidate (`bytes.split` into Arrow buffers) instead of re-encoding each candidate.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from itertools import accumulate
from operator import attrgetter, sub

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from xray_lake.records.encode import HEAD_KEY, TRUNCATED_KEY, _convert
from xray_lake.records.results import Filtered, Generated, Scored

_SENTINEL = "\x00xray-lake\x01"
_SEPARATOR = b',"\\u0000xray-lake\\u0001",'
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_UTC_Z


def pack(items: Sequence[object]) -> bytes | None:
    """One JSON blob of `items` with sentinels between them; None if orjson cannot encode them
    (cycles, huge ints, odd keys): the caller then falls back to shallow copies."""
    n = len(items)
    if n == 0:
        return b"[]"
    spaced: list[object] = [_SENTINEL] * (2 * n - 1)
    spaced[::2] = items
    try:
        return orjson.dumps(spaced, default=_convert, option=_OPTIONS)
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

    Packed apart because orjson's dataclass path is ~4x slower than plain lists, and the
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
                              default=_convert, option=_OPTIONS)
    except Exception:
        return None
    return items, blob, fields


def unpack_fields(blob: bytes, helper: type) -> dict[str, list[object]]:
    """The helpers' fields packed by `pack_helpers`, one list per field."""
    columns: list[list[object]] = orjson.loads(blob)
    return dict(zip(HELPER_FIELDS[helper], columns, strict=True))


def unpack(blob: bytes, cap: int | None, n: int | None = None, *, decode: bool = True,
           ) -> tuple[pa.LargeStringArray, list[object], int]:
    """(one JSON text per item, the decoded items, how many texts were cut to `cap` bytes).

    With `decode=False` (the writer needs only the ids, captured on the caller's thread) the
    blob is split without parsing it, and the items come back as None placeholders; `n` is
    then required.
    """
    if decode or n is None:
        items: list[object] = orjson.loads(blob)[::2]
        n = len(items)
    else:
        items = [None] * n
    if n == 0:
        return pa.array([], pa.large_string()), [], 0
    texts = _split(blob, n)
    if texts is None:  # a candidate's own data contains the separator: encode again
        if not decode:
            items = orjson.loads(blob)[::2]
        texts = pa.array([orjson.dumps(x, option=_OPTIONS) for x in items],
                         pa.large_binary()).cast(pa.large_string())
    n_cut = 0
    if cap is not None:
        texts, n_cut = cap_texts(texts, cap)
    return texts, items, n_cut


def _split(blob: bytes, n: int) -> pa.LargeStringArray | None:
    """The blob's `n` JSON texts; None if the separator occurs in the data.

    Split by `bytes.split` and wrapped as Arrow buffers without a UTF-8 check (orjson writes
    valid UTF-8 only): cheaper than Arrow's split kernel at a stage's size, whose fixed cost
    per call dominated.
    """
    parts = blob[1:-1].split(_SEPARATOR)
    if len(parts) != n:
        return None
    offsets = array("q", [0])
    offsets.extend(accumulate(map(len, parts)))
    return pa.Array.from_buffers(pa.large_string(), n, [
        None, pa.py_buffer(offsets), pa.py_buffer(b"".join(parts))])


def longest(texts: pa.LargeStringArray) -> int:
    """Bytes of the longest text (at least): read off the offsets, no compute kernel call."""
    if not len(texts):
        return 0
    start = texts.offset
    offsets = memoryview(texts.buffers()[1]).cast("q")[start:start + len(texts) + 1]
    return int(max(map(sub, offsets[1:], offsets[:-1])))


def cap_texts(texts: pa.LargeStringArray, cap: int) -> tuple[pa.LargeStringArray, int]:
    """JSON texts longer than `cap` bytes replaced by their marked head; (texts, how many)."""
    if longest(texts) <= cap:
        return texts, 0
    too_long = pc.greater(pc.binary_length(texts), cap)
    n_cut = pc.sum(too_long).as_py() or 0
    if n_cut:
        texts = _cut(texts, too_long, cap)
    return texts, n_cut


def _cut(texts: pa.LargeStringArray, too_long: pa.BooleanArray, cap: int) -> pa.LargeStringArray:
    values = texts.to_pylist()
    for i, flag in enumerate(too_long.to_pylist()):
        if flag and values[i] is not None:
            raw = values[i].encode()
            values[i] = orjson.dumps({
                TRUNCATED_KEY: len(raw),
                HEAD_KEY: raw[:cap].decode("utf-8", errors="ignore"),
            }).decode()
    return pa.array(values, pa.large_string())
