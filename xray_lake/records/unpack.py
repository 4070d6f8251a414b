"""Unpacking on the writer's side: a stage event's packed lists become a `StageView`.

Blobs that records/packed.py made become decoded items and Arrow JSON texts, read into a view
while the event stays as the caller built it. Kept apart from the packing so that the SDK's
hot path imports no pyarrow.
"""

from __future__ import annotations

from array import array
from itertools import accumulate
from operator import sub

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from xray_lake.records.encode import HEAD_KEY, TRUNCATED_KEY
from xray_lake.records.events import StageEvent
from xray_lake.records.packed import HELPER_FIELDS, JSON_OPTIONS, SEPARATOR
from xray_lake.records.results import HELPER_OF, RESULT_HELPERS, unwrap

# A result helper's fields, one list per field.
HelperFields = dict[str, list[object]]


class StageView:
    """A stage's candidate lists as the writer reads them, the event left as the caller built it.

    `in_items`: the input candidates (unwrapped from result helpers), None if the stage had no
    input list; `in_texts`: their JSON texts where unpacking made them (null where an input
    was not packed), else None. `out_items`: the returned candidates (unwrapped), None if the
    stage returned no list to read; `out_texts` likewise; `helper_fields`: the fields of the
    result helpers they were returned in, None without helpers. Texts are uncapped.
    """

    __slots__ = ("helper_fields", "in_items", "in_texts", "out_items", "out_texts")

    def __init__(self, in_items: list[object] | None, in_texts: pa.Array | None,
                 out_items: list[object] | None, out_texts: pa.Array | None,
                 helper_fields: HelperFields | None) -> None:
        self.in_items = in_items
        self.in_texts = in_texts
        self.out_items = out_items
        self.out_texts = out_texts
        self.helper_fields = helper_fields

    def input_texts(self, rows: list[int] | None = None) -> pa.Array | None:
        """The input texts (all, or those of `rows`), when unpacking made them."""
        if self.in_texts is None or rows is None:
            return self.in_texts
        return self.in_texts.take(pa.array(rows, pa.int64()))


def view(ev: StageEvent, reads_items: bool) -> StageView:
    """Read a stage event's candidate lists; `reads_items`: something besides the row builder
    (promoted fields, metric plugins) reads the candidates' fields.

    Parsing a blob costs more than packing it: a blob is only split into texts when the ids
    (read on the caller's thread) are all the writer needs from those items.
    """
    f = ev.spec.fields
    ins, outs = ev.inputs, ev.outputs
    ids_only = not (reads_items or f.passed or f.reason_label or f.reason_text or f.score
                    or f.reason)
    in_snap, in_texts = ins.snap, None
    if ins.blob is not None:
        in_texts, in_snap, _ = unpack(
            ins.blob, None, len(ins.keys) if ins.keys is not None else None,
            decode=not (ids_only and ins.keys is not None))
    if ins.dropped_blob is not None and ins.dropped_idx is not None and ins.refs is not None:
        texts, dropped, _ = unpack(ins.dropped_blob, None)
        merged = list(map(unwrap, ins.refs))
        slots: list[int | None] = [None] * len(merged)
        for j, (i, item) in enumerate(zip(ins.dropped_idx, dropped, strict=False)):
            merged[i] = item
            slots[i] = j
        in_snap = merged
        # the dropped inputs' texts at their input positions; null where an input was kept
        in_texts = texts.take(pa.array(slots, pa.int64()))
    in_items = in_snap if in_snap is not None else ins.refs
    if in_items and isinstance(in_items[0], RESULT_HELPERS):
        in_items = list(map(unwrap, in_items))
    if in_snap is None or in_texts is None or len(in_texts) != len(in_snap):
        in_texts = None

    helper = HELPER_OF.get(ev.spec.type)
    out_items, out_texts, fields = outs.snap, None, None
    if outs.blob is not None:
        texts, items, _ = unpack(
            outs.blob, None, len(outs.keys) if outs.keys is not None else None,
            # helpers packed apart bring their own fields: the items' mapped ones are unused
            decode=outs.helpers or outs.keys is None
            or not (ids_only or (outs.fields is not None and not reads_items)))
        if outs.helpers:  # packed whole as dicts of their fields: rebuild them
            out_items = [_rebuild_helper(x) for x in items]
        else:
            out_texts, out_items = texts, items
        if outs.fields is not None and helper is not None:  # helpers packed apart
            fields = unpack_fields(outs.fields, helper)
    if out_items is not None and fields is None and helper is not None:
        out_items, fields = _split_helpers(out_items, helper)
    return StageView(in_items, in_texts, out_items, out_texts, fields)


def _split_helpers(items: list[object], helper: type) -> tuple[list[object], HelperFields | None]:
    """Typed result helpers split into (candidates, the helpers' fields); None when unused."""
    if not items or not isinstance(items[0], helper):
        return items, None
    payloads = [x.item if isinstance(x, helper) else x for x in items]  # type: ignore[attr-defined]
    return payloads, {name: [getattr(x, name) if isinstance(x, helper) else None for x in items]
                      for name in HELPER_FIELDS[helper]}


_HELPER_OF_FIELDS = {frozenset(h.__dataclass_fields__): h for h in RESULT_HELPERS}


def _rebuild_helper(value: object) -> object:
    """A helper packed whole (a dict of its fields) as the helper again."""
    if isinstance(value, dict):
        helper = _HELPER_OF_FIELDS.get(frozenset(value))
        if helper is not None:
            return helper(**value)
    return value


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
