"""One stage's candidate rows, kept as Python columns until their partition is written.

A stage holds ~100-1,000 candidates: turning each stage into Arrow on its own takes many
pyarrow calls whose fixed cost outweighs the conversion itself. Converting the rows of all
the stages written together costs one call per column per file instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate, chain
from typing import cast

import pyarrow as pa
import pyarrow.compute as pc

from xray_lake.records.schema import CANDIDATES
from xray_lake.records.values import to_float

_TEXT_TYPES = frozenset({str, type(None)})
_BOOL_TYPES = frozenset({bool, type(None)})
# Memory a buffered row holds besides its JSON text: 8 tuple slots, boxed positions and
# score, a fresh id string (tracemalloc; figure in benchmarks/RESULTS.md).
_ROW_BYTES = 160


def only_text(values: Sequence[object]) -> bool:
    """True when every value is a str or None: one C-level pass, so the common case skips
    the per-value conversions."""
    return set(map(type, values)) <= _TEXT_TYPES


def text_or_none(values: Sequence[object]) -> list[str | None]:
    if only_text(values):
        return cast("list[str | None]", values if isinstance(values, list) else list(values))
    return [v if v is None or type(v) is str else str(v) for v in values]


def scores(values: Sequence[object]) -> pa.Array:
    """The score column. NaN and +-inf become null, as in the JSON payload, whichever snapshot
    path supplied the value (the metrics skip them and count them in n_score_null)."""
    try:
        array = pa.array(values, pa.float64())
    except Exception:
        array = pa.array([to_float(v) for v in values], pa.float64())
    finite = pc.is_finite(array)
    if pc.all(finite).as_py() is False:
        array = pc.if_else(finite, array, pa.scalar(None, pa.float64()))
    return array


def verdicts(values: Sequence[object]) -> pa.Array:
    """The passed column: booleans as they are, anything else by its truth value."""
    if set(map(type, values)) <= _BOOL_TYPES:
        return pa.array(values, pa.bool_())
    return pa.array([None if p is None else bool(p) for p in values], pa.bool_())


class PendingRows:
    """The `candidates` rows of one stage: what `to_batch` turns into Arrow, many at once.

    `num_rows` and `nbytes` are what the writer counts for its buffer bound.
    """

    __slots__ = ("ids", "in_pos", "nbytes", "num_rows", "out_pos", "passed", "promoted",
                 "reason", "reason_label", "reason_text", "run_id", "score", "stage",
                 "texts")

    def __init__(self, run_id: str, stage: tuple[str, str, str], ids: list[str | None],
                 in_pos: list[int | None], out_pos: list[int | None], passed: list[object],
                 reason_label: list[str | None], reason_text: list[str | None],
                 score: list[object], reason: list[str | None], texts: pa.Array,
                 promoted: list[tuple[str, pa.Array]]) -> None:
        self.run_id = run_id
        self.stage = stage  # (stage_id, stage name, recorded type)
        # Tuples, not lists: the cyclic GC stops tracking a tuple of plain values after one
        # pass, while every buffered list would be re-scanned by each full collection.
        self.ids = tuple(ids)
        self.in_pos = tuple(in_pos)
        self.out_pos = tuple(out_pos)
        self.passed = tuple(passed)
        self.reason_label = tuple(reason_label)
        self.reason_text = tuple(reason_text)
        self.score = tuple(score)
        self.reason = tuple(reason)
        self.texts = texts
        self.promoted = promoted  # (column, values): the stage's promoted fields
        self.num_rows = len(ids)
        self.nbytes = texts.nbytes + sum(a.nbytes for _, a in promoted) \
            + _ROW_BYTES * self.num_rows


def to_table(group: Sequence[PendingRows]) -> pa.Table:
    """The rows of `group` (stages without promoted fields, or a single stage) as a table
    whose JSON texts stay the stages' own chunks (not copied into one array)."""

    def joined(name: str) -> list[object]:
        return list(chain.from_iterable(getattr(r, name) for r in group))

    run_ends = pa.array(list(accumulate(r.num_rows for r in group)), pa.int32())

    def constant(index: int | None) -> pa.Array:
        """A value per stage, repeated over its rows (run-end decoded in Arrow)."""
        values = [r.run_id if index is None else r.stage[index] for r in group]
        return pc.run_end_decode(pa.RunEndEncodedArray.from_arrays(
            run_ends, pa.array(values, pa.string())))

    arrays = [
        constant(None), constant(0), constant(1), constant(2),
        pa.array(joined("ids"), pa.string()),
        pa.array(joined("in_pos"), pa.int32()),
        pa.array(joined("out_pos"), pa.int32()),
        verdicts(joined("passed")),
        pa.array(joined("reason_label"), pa.string()),
        pa.array(joined("reason_text"), pa.string()),
        scores(joined("score")),
        pa.array(joined("reason"), pa.string()),
        pa.chunked_array([r.texts for r in group], pa.large_string()),
    ]
    extra = group[0].promoted if len(group) == 1 else []
    if not extra:
        return pa.Table.from_arrays(arrays, schema=CANDIDATES)
    schema = pa.schema([*CANDIDATES, *(pa.field(name, values.type) for name, values in extra)])
    return pa.Table.from_arrays([*arrays, *(values for _, values in extra)], schema=schema)


def to_tables(items: Sequence[PendingRows]) -> list[pa.Table]:
    """Buffered candidate rows as tables: runs of stages without promoted fields together,
    each stage with promoted fields alone (its columns are its own)."""
    out: list[pa.Table] = []
    group: list[PendingRows] = []
    for item in items:
        if not item.promoted:
            group.append(item)
            continue
        if group:
            out.append(to_table(group))
            group = []
        out.append(to_table([item]))
    if group:
        out.append(to_table(group))
    return out
