"""The stage record's shape: two sides, picklable, and read by the writer without being changed."""

from __future__ import annotations

import copy
import pickle
from typing import Any

from xray_lake.config import Settings
from xray_lake.records.build import build_stage
from xray_lake.records.events import FieldMap, StageEvent, StageSpec
from xray_lake.records.packed import pack, pack_helpers
from xray_lake.records.results import Scored


def _event(spec: StageSpec) -> StageEvent:
    return StageEvent(spec, "run-1", "label", "2026-12-07", "stage-1")


def _state(obj: object) -> Any:
    """Every slot of a slotted object, recursively, for comparing two events."""
    slots = getattr(type(obj), "__slots__", None)
    if slots is None:
        return obj
    return {name: _state(getattr(obj, name)) for name in slots}


def test_a_stage_event_survives_a_pickle_round_trip_with_both_sides() -> None:
    ev = _event(StageSpec("score", "scoring", FieldMap(score="score")))
    items = [{"id": "a", "score": 1.0}, {"id": "b", "score": 0.5}]
    ev.inputs.refs = items
    ev.inputs.keys = ("a", "b")
    ev.inputs.raw = {"query": "shoes"}
    ev.outputs.blob = pack(items[:1])
    ev.outputs.keys = ("a",)
    back = pickle.loads(pickle.dumps(ev, protocol=pickle.HIGHEST_PROTOCOL))
    assert _state(back) == _state(ev)


def test_building_rows_reads_the_event_without_changing_it() -> None:
    spec = StageSpec("score", "scoring", FieldMap(score="score"))
    ev = _event(spec)
    items: list[object] = [{"id": "a", "score": 1.0}, {"id": "b", "score": 0.5}]
    returned = [Scored(items[0], 0.9)]
    packed = pack_helpers(returned, Scored)
    assert packed is not None
    _items, ev.outputs.blob, ev.outputs.fields = packed
    ev.outputs.keys = ("a",)
    ev.inputs.refs = items
    ev.inputs.keys = ("a", "b")
    ev.inputs.dropped_blob = pack(items[1:])
    ev.inputs.dropped_idx = [1]
    before = copy.deepcopy(_state(ev))
    built = build_stage(ev, Settings())
    assert _state(ev) == before
    rows = built.candidate_rows
    assert rows is not None and rows.ids == ("a", "b") and rows.score == (0.9, None)
    assert rows.out_pos == (0, None)
