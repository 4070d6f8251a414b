"""Result helpers (xr.Filtered / Scored / Generated) are packed as items + fields on the
caller's thread (records/packed.py). Whatever path a list takes (packed apart, packed whole
for mixed lists, or read by reference), the recorded rows are the same."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest

import xray_lake as xr
from xray_lake.records.packed import pack_helpers
from xray_lake.records.unpack import unpack, unpack_fields
from xray_lake.testing import capture_records

Item = dict[str, Any]
COLUMNS = ("candidate_id", "in_position", "out_position", "passed", "reason_label",
           "reason_text", "score", "reason", "payload")


class Why(enum.Enum):
    PRICE = "price"


def _rows(records: Any, stage: str) -> list[tuple[object, ...]]:
    frame = records.candidates.filter(records.candidates["stage_name"] == stage)
    rows = frame.select(COLUMNS).sort("in_position", "out_position", nulls_last=True).rows()
    return [(*row[:-1], orjson.loads(row[-1])) for row in rows]


def _record_both_ways(make: Callable[[str], Callable[[list[Item]], object]],
                      items: list[Item]) -> tuple[list[tuple[object, ...]], ...]:
    """The rows of the same stage run with the default snapshot and by reference."""
    out = []
    for mode in ("freeze", "reference"):
        xr.configure(snapshot=mode)
        try:
            with capture_records() as records:
                make(mode)([dict(c) for c in items])
                out.append(_rows(records, mode))
        finally:
            xr.configure(snapshot="freeze")
    return tuple(out)


ITEMS: list[Item] = [{"id": f"c{i}", "price": 10.0 * i, "tags": ["a", i]} for i in range(6)]


def test_filtered_verdicts_are_recorded_the_same_packed_apart_or_by_reference() -> None:
    def make(name: str) -> Callable[[list[Item]], object]:
        @xr.filtering_stage(name, id="id")
        def stage(items: list[Item]) -> list[xr.Filtered[Item]]:
            return [xr.Filtered(c, c["price"] < 30, None if c["price"] < 30 else "price",
                                None if c["price"] < 30 else f"{c['price']} is over 30")
                    for c in items]
        return stage

    frozen, by_reference = _record_both_ways(make, ITEMS)
    assert frozen == by_reference
    assert [r[3] for r in frozen] == [True, True, True, False, False, False]
    assert frozen[4][4:6] == ("price", "40.0 is over 30")
    assert frozen[0][-1] == ITEMS[0]


def test_scores_and_generation_reasons_are_recorded_the_same_packed_apart_or_by_reference(
) -> None:
    def scoring(name: str) -> Callable[[list[Item]], object]:
        @xr.scoring_stage(name, id="id")
        def stage(items: list[Item]) -> list[xr.Scored[Item]]:
            scores: list[object] = [1.5, float("nan"), np.float32(2.5), None, float("inf"), 7]
            return [xr.Scored(c, s) for c, s in zip(items, scores, strict=True)]
        return stage

    frozen, by_reference = _record_both_ways(scoring, ITEMS)
    assert frozen == by_reference
    assert [r[6] for r in frozen] == [1.5, None, 2.5, None, None, 7.0]

    def generation(name: str) -> Callable[[list[Item]], object]:
        @xr.generation_stage(name, id="id")
        def stage(items: list[Item]) -> list[xr.Generated[Item]]:
            return [xr.Generated(c, f"rule {i}" if i % 2 else None)
                    for i, c in enumerate(items)]
        return stage

    frozen, by_reference = _record_both_ways(generation, ITEMS)
    assert frozen == by_reference
    assert [r[7] for r in frozen] == [None, "rule 1", None, "rule 3", None, "rule 5"]


def test_items_are_frozen_when_the_stage_returns() -> None:
    with capture_records() as records:
        kept: list[xr.Filtered[Item]] = []

        @xr.filtering_stage("freeze", id="id")
        def stage(items: list[Item]) -> list[xr.Filtered[Item]]:
            kept.extend(xr.Filtered(c, True) for c in items)
            return kept

        stage([dict(c) for c in ITEMS])
        for verdict in kept:  # the caller changes its candidates after the stage returned
            verdict.item["price"] = -1
        assert all(row[-1]["price"] >= 0 for row in _rows(records, "freeze"))


def test_mixed_lists_odd_values_and_separators_fall_back_and_lose_nothing() -> None:
    sentinel = "\x00xray-lake\x01"
    with capture_records() as records:
        @xr.filtering_stage("mixed", id="id")
        def mixed(items: list[Item]) -> list[object]:
            return [xr.Filtered(items[0], False, "a"), items[1], xr.Filtered(items[2], True)]

        @xr.filtering_stage("odd", id="id")
        def odd(items: list[Item]) -> list[xr.Filtered[Item]]:
            return [xr.Filtered(items[0], np.bool_(False), Why.PRICE),  # type: ignore[arg-type]
                    xr.Filtered(items[1], True, None, sentinel),
                    xr.Filtered({"id": sentinel, "x": [sentinel]}, True)]

        mixed([dict(c) for c in ITEMS[:3]])
        odd([dict(c) for c in ITEMS[:2]])
        rows = _rows(records, "mixed")
        assert [r[0] for r in rows] == ["c0", "c1", "c2"]
        assert rows[0][3:5] == (False, "a")
        odd_rows = {r[0]: r for r in _rows(records, "odd")}
        assert odd_rows["c0"][3:5] == (False, "price")
        assert odd_rows["c1"][5] == sentinel
        assert odd_rows[sentinel][-1] == {"id": sentinel, "x": [sentinel]}


@pytest.mark.parametrize("helper, values", [
    (xr.Filtered, [(True, None, None), (False, "label", "text")]),
    (xr.Scored, [(1.0,), (None,)]),
    (xr.Generated, [("why",), (None,)]),
])
def test_pack_helpers_round_trip(helper: type, values: list[tuple[object, ...]]) -> None:
    result = [helper({"id": i}, *v) for i, v in enumerate(values)]
    packed = pack_helpers(result, helper)
    assert packed is not None
    items, blob, fields = packed
    texts, decoded, _ = unpack(blob, None)
    assert decoded == items == [{"id": 0}, {"id": 1}]
    assert texts.to_pylist() == ['{"id":0}', '{"id":1}']
    columns = unpack_fields(fields, helper)
    assert [tuple(col[i] for col in columns.values()) for i in range(2)] == values
    assert pack_helpers([*result, {"id": 9}], helper) is None  # mixed: packed whole instead
