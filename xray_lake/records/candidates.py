"""One stage's candidate rows as Python columns, filled by the row builders (records/build.py).

Kept as lists until the stage is finished: the caps, promoted fields and metric plugins see
every candidate, and sampling then keeps some rows (`take`) before they become `PendingRows`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import compress, repeat
from operator import methodcaller
from typing import Any

import pyarrow as pa

from xray_lake.records import plugin_registry as registry
from xray_lake.records.cuts import Cuts, cap_reasons
from xray_lake.records.encode import encode_many
from xray_lake.records.options import CapsInForce
from xray_lake.records.pending import PendingRows, scores, text_or_none, verdicts
from xray_lake.records.promoted import Promoted
from xray_lake.records.promoted_columns import Extracted, extract
from xray_lake.records.unpack import cap_texts
from xray_lake.records.values import read_field


def column(items: Sequence[object], name: str | None) -> list[object]:
    """The values of field `name` across `items` (None where absent)."""
    if name is None:
        return [None] * len(items)
    if "." not in name and set(map(type, items)) <= {dict}:  # a dotted name is a path
        return list(map(methodcaller("get", name), items))
    return list(map(read_field, items, repeat(name)))


class StageCandidates:
    """Column lists of one stage's candidate rows, filled per stage type.

    `finish()` then completes them before sampling, so caps and promoted fields are counted
    over every candidate: one capped JSON text per row (`texts`), capped reasons, and the
    promoted columns.
    """

    def __init__(self) -> None:
        self.ids: list[str | None] = []
        self.in_pos: list[int | None] = []
        self.out_pos: list[int | None] = []
        self.passed: list[object] = []
        self.reason_label: list[object] = []
        self.reason_text: list[object] = []
        self.score: list[object] = []
        self.reason: list[object] = []
        self.payload: list[object] = []
        # (start, end, JSON texts already made by unpack() or None) per extend() call; a text
        # may be null (not frozen as JSON): finish() encodes those
        self.segments: list[tuple[int, int, pa.Array | None]] = []
        self.texts: pa.Array | None = None  # set by finish(): one capped JSON text per row
        self.promoted: Extracted | None = None

    def extend(
        self,
        payload: Sequence[object],
        ids: Sequence[str | None],
        in_pos: Sequence[int | None],
        out_pos: Sequence[int | None],
        *,
        passed: Sequence[object] | None = None,
        reason_label: Sequence[object] | None = None,
        reason_text: Sequence[object] | None = None,
        score: Sequence[object] | None = None,
        reason: Sequence[object] | None = None,
        texts: pa.Array | None = None,
    ) -> None:
        n = len(payload)
        start = len(self.payload)
        self.segments.append((start, start + n, texts if texts is not None and len(texts) == n
                              else None))
        self.payload.extend(payload)
        self.ids.extend(ids)
        self.in_pos.extend(in_pos)
        self.out_pos.extend(out_pos)
        for target, values in (
            (self.passed, passed),
            (self.reason_label, reason_label),
            (self.reason_text, reason_text),
            (self.score, score),
            (self.reason, reason),
        ):
            target.extend(values if values is not None else [None] * n)

    def finish(self, caps: CapsInForce, promoted: Sequence[Promoted], cuts: Cuts) -> list[str]:
        """Payload texts, reasons and promoted columns of every row, capped; what was cut is
        added to `cuts`. Returns problems for the stage's validation_error."""
        parts = [_complete(texts, self.payload[start:end]) for start, end, texts in self.segments]
        texts = parts[0] if len(parts) == 1 else pa.concat_arrays(parts)
        self.texts, n_cut = cap_texts(texts, caps.payload)
        cuts.add("payload", n_cut, caps.payload)
        for name in ("reason_text", "reason"):
            values, n_cut = cap_reasons(getattr(self, name), caps.reason)
            setattr(self, name, values)
            cuts.add(name, n_cut, caps.reason)
        problems: list[str] = []
        if promoted:
            self.promoted = extract(self.payload, promoted, caps.payload)
            cuts.add("promoted strings", self.promoted.n_cut, caps.payload)
            for column, (n_bad, kind) in self.promoted.misfits.items():
                cuts.add(column, n_bad, None, kind)
                problems.append(f"{n_bad} of {len(self.payload)} values of promoted field "
                                f"{column} do not fit {kind}; stored null")
        return problems

    def take(self, keep: Sequence[bool]) -> StageCandidates:
        """The rows where `keep` is true, in order (finished texts and promoted columns too)."""
        out = StageCandidates()
        for name in ("ids", "in_pos", "out_pos", "passed", "reason_label", "reason_text",
                     "score", "reason", "payload"):
            setattr(out, name, list(compress(getattr(self, name), keep)))
        mask = pa.array(keep, pa.bool_())
        if self.texts is not None:
            out.texts = self.texts.filter(mask)
            out.segments = [(0, len(out.payload), out.texts)]
        if self.promoted is not None:
            out.promoted = self.promoted.take(mask)
        return out


def _complete(texts: pa.Array | None, items: Sequence[object]) -> pa.Array:
    """The JSON text of every item: those unpack() made, the rest encoded now (uncapped)."""
    if texts is None:
        return encode_many(items)[0]
    if not texts.null_count:
        return texts
    values = texts.to_pylist()
    todo = [i for i, v in enumerate(values) if v is None]
    made = encode_many([items[i] for i in todo])[0].to_pylist()
    for i, text in zip(todo, made, strict=True):
        values[i] = text
    return pa.array(values, pa.large_string())


def to_pending(c: StageCandidates, run_id: str, stage: tuple[str, str, str]) -> PendingRows:
    """The stored rows, converted to Arrow later with the rest of their partition."""
    promoted = c.promoted.arrays if c.promoted else []
    return PendingRows(
        run_id, stage, c.ids,
        c.in_pos, c.out_pos, c.passed, text_or_none(c.reason_label),
        text_or_none(c.reason_text), c.score, text_or_none(c.reason),
        c.texts if c.texts is not None else encode_many(c.payload)[0], promoted)


def plugin_table(c: StageCandidates | None) -> registry.TableFactory | None:
    """What metric plugins read: every candidate row of the stage (before sampling) as an
    Arrow table, built only if a plugin runs: the standard columns, then candidate fields."""
    if c is None:
        return None

    def table(fields: Sequence[tuple[str, str]], standard: bool) -> pa.Table:
        columns: dict[str, pa.Array] = {}
        if standard:
            columns = {
                "candidate_id": pa.array(c.ids, pa.string()),
                "in_position": pa.array(c.in_pos, pa.int32()),
                "out_position": pa.array(c.out_pos, pa.int32()),
                "passed": verdicts(c.passed),
                "reason_label": _array(c.reason_label, pa.string(), text_or_none),
                "reason_text": _array(c.reason_text, pa.string(), text_or_none),
                "score": scores(c.score),
                "reason": _array(c.reason, pa.string(), text_or_none),
            }
        for name, key in fields:  # inferred type; mixed types as text
            columns[name] = _array(column(c.payload, key), None, text_or_none)
        return pa.table(columns)

    return table


def _array(values: list[object], kind: pa.DataType | None,
           convert: Callable[[list[object]], list[Any]]) -> pa.Array:
    """`values` as an Arrow array in one C-level pass when they already fit, else converted."""
    try:
        return pa.array(values, kind)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return pa.array(convert(values), kind or pa.string())
