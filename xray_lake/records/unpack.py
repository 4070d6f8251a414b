"""Unpacking on the writer's side: blobs that records/packed.py made become Arrow JSON texts.

Kept apart from the packing so that the SDK's hot path imports no pyarrow.
"""

from __future__ import annotations

from array import array
from itertools import accumulate
from operator import sub

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from xray_lake.records.encode import HEAD_KEY, TRUNCATED_KEY
from xray_lake.records.packed import HELPER_FIELDS, JSON_OPTIONS, SEPARATOR


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
        texts = pa.array([orjson.dumps(x, option=JSON_OPTIONS) for x in items],
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
    parts = blob[1:-1].split(SEPARATOR)
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
