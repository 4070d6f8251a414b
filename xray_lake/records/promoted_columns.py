"""Promoted fields on the writer's side: a stage's candidate values as typed Arrow columns.

The spec (`fields=`, `xr.Field`, `Promoted`) lives in records/promoted.py, which the SDK
imports without pyarrow; this module is the writer's and loads it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from operator import methodcaller

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from xray_lake.records.encode import cap_text, to_json
from xray_lake.records.promoted import Promoted
from xray_lake.records.values import read_field

__all__ = ["ARROW_TYPES", "Extracted", "extract"]

ARROW_TYPES: dict[str, pa.DataType] = {"int64": pa.int64(), "float64": pa.float64(),
                                       "bool": pa.bool_(), "string": pa.string()}
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_PLAIN = frozenset({str, int, float, bool, type(None)})



class Extracted:
    """The promoted columns of one stage's candidate rows, and what could not be stored."""

    __slots__ = ("arrays", "misfits", "n_cut")

    def __init__(self) -> None:
        self.arrays: list[tuple[str, pa.Array]] = []  # (column, values), columns with values
        self.misfits: dict[str, tuple[int, str]] = {}  # column -> (values stored null, type)
        self.n_cut = 0  # strings cut to the text cap

    def take(self, mask: pa.BooleanArray) -> Extracted:
        out = Extracted()
        out.arrays = [(name, values.filter(mask)) for name, values in self.arrays]
        out.misfits, out.n_cut = self.misfits, self.n_cut
        return out


def extract(items: Sequence[object], promoted: Sequence[Promoted], text_cap: int) -> Extracted:
    """Each promoted field of `items` (decoded payloads, or frozen copies) as a typed array.

    Never raises on values: those that do not fit a declared type become null (counted in
    `misfits`); strings longer than `text_cap` characters are cut and marked (`n_cut`).
    """
    result = Extracted()
    all_dicts = set(map(type, items)) <= {dict}
    for p in promoted:
        if all_dicts and "." not in p.source:  # a dotted source is a path: read_field
            values: list[object] = list(map(methodcaller("get", p.source), items))
        else:
            values = [read_field(item, p.source) for item in items]
        kinds = set(map(type, values))
        if not kinds <= _PLAIN:
            values = [_plain(v) for v in values]
            kinds = set(map(type, values))
        kind = p.type or _infer(values, kinds)
        if kind is None:
            continue  # no candidate has the field: no column (readers see null)
        array = _fast(values, kinds, kind)
        if array is None:  # values that need a look one by one
            converted, misfits = _CONVERT[kind](values)
            if misfits:
                result.misfits[p.column] = (misfits, kind)
            array = pa.array(converted, ARROW_TYPES[kind])
        if kind == "string" and len(array) and (pc.max(pc.utf8_length(array)).as_py() or 0) \
                > text_cap:
            capped, n_cut = _cap_strings(array.to_pylist(), text_cap)
            result.n_cut += n_cut
            array = pa.array(capped, pa.string())
        result.arrays.append((p.column, array))
    return result


_FAST_KINDS: dict[str, frozenset[type]] = {
    "float64": frozenset({float, int, type(None)}),
    "int64": frozenset({int, type(None)}),
    "bool": frozenset({bool, type(None)}),
    "string": frozenset({str, type(None)}),
}


def _fast(values: list[object], kinds: set[type], kind: str) -> pa.Array | None:
    """The column in one Arrow conversion when every value already fits (the usual case)."""
    if not kinds <= _FAST_KINDS[kind]:
        return None
    try:
        array = pa.array(values, ARROW_TYPES[kind])
    except (pa.ArrowException, OverflowError):
        return None
    if kind == "float64" and float in kinds:  # NaN and +-inf: null, as in the JSON payload
        finite = pc.is_finite(array)
        if pc.all(finite).as_py() is False:
            array = pc.if_else(finite, array, pa.scalar(None, pa.float64()))
    return array


def _plain(value: object) -> object:
    """What the frozen JSON holds for `value`: a live object's field (a fallback snapshot, or
    `snapshot="reference"`) read as the payload encoder would write it."""
    if type(value) in _PLAIN:
        return None if isinstance(value, float) and not math.isfinite(value) else value
    try:
        return orjson.loads(to_json(value)[0])
    except Exception:
        return None


def _infer(values: Sequence[object], kinds: set[type]) -> str | None:
    kinds = kinds - {type(None)}
    if not kinds:
        return None
    if kinds == {bool}:
        return "bool"
    if kinds == {int}:
        fits = all(_INT_MIN <= v <= _INT_MAX for v in values if isinstance(v, int))
        return "int64" if fits else "string"
    if kinds <= {int, float}:
        return "float64"
    return "string"


Converted = tuple[list[object], int]


def _to_float(values: Sequence[object]) -> Converted:
    out: list[object] = []
    bad = 0
    for v in values:
        number: float | None
        if v is None:
            number = None
        elif isinstance(v, bool):
            number, bad = None, bad + 1
        elif isinstance(v, int | float):
            number = float(v)
        else:
            number = _parse(v, float)
            bad += number is None
        out.append(number if number is None or math.isfinite(number) else None)
    return out, bad


def _to_int(values: Sequence[object]) -> Converted:
    out: list[object] = []
    bad = 0
    for v in values:
        if v is None:
            out.append(None)
            continue
        number: float | None = None
        if isinstance(v, bool):
            pass
        elif isinstance(v, int):
            number = v
        elif isinstance(v, float) and math.isfinite(v) and v.is_integer():
            number = int(v)
        else:
            number = _parse(v, int)
        if number is None or not _INT_MIN <= number <= _INT_MAX:
            bad += 1
            number = None
        out.append(number)
    return out, bad


def _to_bool(values: Sequence[object]) -> Converted:
    out: list[object] = []
    bad = 0
    for v in values:
        if v is None or isinstance(v, bool):
            out.append(v)
        else:
            bad += 1
            out.append(None)
    return out, bad


def _to_string(values: Sequence[object]) -> Converted:
    return [v if v is None or isinstance(v, str) else orjson.dumps(v).decode()
            for v in values], 0


def _parse(value: object, kind: Callable[[str], float]) -> float | None:
    """A number written as text ("19.99", a Decimal's JSON form) for a declared number type."""
    if not isinstance(value, str):
        return None
    try:
        return kind(value)
    except (ValueError, OverflowError):
        return None


_CONVERT: dict[str, Callable[[Sequence[object]], Converted]] = {
    "float64": _to_float, "int64": _to_int, "bool": _to_bool, "string": _to_string,
}


def _cap_strings(values: list[object], cap: int) -> tuple[list[object], int]:
    n_cut = 0
    for i, v in enumerate(values):
        if isinstance(v, str) and len(v) > cap:
            values[i], _ = cap_text(v, cap)
            n_cut += 1
    return values, n_cut
