"""Tests for xray_lake.records.encode: any value becomes valid JSON text, never an exception."""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime as dt
import enum
import uuid
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any, overload

import numpy as np
import orjson
import pyarrow as pa
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xray_lake.records.encode import (
    HEAD_KEY,
    TRUNCATED_KEY,
    cap_text,
    encode_many,
    to_json,
)


def decoded(value: object) -> Any:
    text, truncated = to_json(value)
    assert not truncated
    return orjson.loads(text)


def nesting_depth(value: Any) -> int:
    depth = 0
    while isinstance(value, list):
        depth += 1
        value = value[0] if value else None
    return depth


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Candidate:
    item_id: str
    score: float
    _internal: int = 0


class Model(pydantic.BaseModel):
    name: str
    when: dt.datetime
    price: Decimal


class Plain:
    def __init__(self) -> None:
        self.a = 1
        self.b = "two"
        self._hidden = 3
        self.callback = lambda: None

    def method(self) -> None:
        pass


class Slotted:
    __slots__ = ("_secret", "unset", "x", "y")

    def __init__(self) -> None:
        self.x = 1
        self.y = [2]
        self._secret = 3


class BadRepr:
    __slots__ = ()

    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class RaisingAttributes:
    def __getattribute__(self, name: str) -> Any:
        raise RuntimeError(name)


class BrokenModelDump:
    def __init__(self) -> None:
        self.field = 1

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        raise ValueError("broken")


Point = collections.namedtuple("Point", ["x", "y"])


# --- value classes ---------------------------------------------------------------------------


def test_aware_datetime_encodes_as_iso_with_z() -> None:
    assert decoded(dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)) == "2024-05-01T12:30:00Z"


def test_aware_datetime_keeps_non_utc_offset() -> None:
    tz = dt.timezone(dt.timedelta(hours=2))
    assert decoded(dt.datetime(2024, 5, 1, 12, 30, tzinfo=tz)) == "2024-05-01T12:30:00+02:00"


def test_naive_datetime_stays_naive() -> None:
    assert decoded(dt.datetime(2024, 5, 1, 12, 30)) == "2024-05-01T12:30:00"


def test_date_encodes_as_iso() -> None:
    assert decoded(dt.date(2024, 5, 1)) == "2024-05-01"


def test_decimal_encodes_as_string_keeping_precision() -> None:
    assert decoded(Decimal("0.10000000000000000000001")) == "0.10000000000000000000001"


def test_uuid_encodes_as_canonical_string() -> None:
    value = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert decoded(value) == "12345678-1234-5678-1234-567812345678"


def test_set_encodes_as_sorted_list() -> None:
    assert decoded({3, 1, 2}) == [1, 2, 3]


def test_frozenset_encodes_as_sorted_list() -> None:
    assert decoded(frozenset({"b", "a"})) == ["a", "b"]


def test_unsortable_set_encodes_as_list_of_its_items() -> None:
    result = decoded({1, "a"})
    assert sorted(result, key=str) == [1, "a"]


def test_bytes_encode_as_base64() -> None:
    assert base64.b64decode(decoded(b"\x00\xffabc")) == b"\x00\xffabc"


def test_bytearray_and_memoryview_encode_as_base64() -> None:
    assert decoded(bytearray(b"ab")) == "YWI="
    assert decoded(memoryview(b"ab")) == "YWI="


def test_enum_encodes_as_its_value() -> None:
    assert decoded(Color.RED) == "red"


def test_numpy_scalars_encode_as_numbers() -> None:
    assert decoded([np.int64(7), np.float32(1.5), np.bool_(True)]) == [7, 1.5, True]


def test_numpy_array_encodes_as_nested_lists() -> None:
    assert decoded(np.arange(6).reshape(2, 3)) == [[0, 1, 2], [3, 4, 5]]


def test_non_contiguous_numpy_array_encodes_as_list() -> None:
    assert decoded(np.arange(10)[::3]) == [0, 3, 6, 9]


def test_object_dtype_numpy_array_encodes_as_list() -> None:
    assert decoded(np.array([1, "a", None], dtype=object)) == [1, "a", None]


def test_pydantic_model_encodes_as_json_mode_dump() -> None:
    model = Model(name="x", when=dt.datetime(2024, 1, 1, tzinfo=dt.UTC), price=Decimal("1.10"))
    assert decoded(model) == {"name": "x", "when": "2024-01-01T00:00:00Z", "price": "1.10"}


def test_object_whose_model_dump_raises_encodes_its_attributes() -> None:
    assert decoded(BrokenModelDump()) == {"field": 1}


def test_dataclass_encodes_public_fields() -> None:
    assert decoded(Candidate("a", 0.5, 9)) == {"item_id": "a", "score": 0.5}


def test_namedtuple_encodes_as_dict_of_fields() -> None:
    assert decoded(Point(1, 2)) == {"x": 1, "y": 2}


def test_plain_object_encodes_public_non_callable_attributes() -> None:
    assert decoded(Plain()) == {"a": 1, "b": "two"}


def test_object_with_slots_encodes_set_public_slots() -> None:
    assert decoded(Slotted()) == {"x": 1, "y": [2]}


def test_object_without_public_attributes_encodes_as_repr() -> None:
    value = object()
    assert decoded(value) == repr(value)


def test_class_encodes_as_repr() -> None:
    assert decoded(Plain) == repr(Plain)


def test_object_whose_repr_raises_encodes_as_unrepresentable_marker() -> None:
    assert decoded(BadRepr()) == "<unrepresentable BadRepr>"


def test_object_whose_attribute_access_raises_still_encodes() -> None:
    assert isinstance(decoded(RaisingAttributes()), str)


def test_self_referencing_dict_encodes_with_cycle_marker() -> None:
    value: dict[str, Any] = {"a": 1}
    value["self"] = value
    assert decoded(value) == {"a": 1, "self": "<cycle>"}


def test_self_referencing_list_encodes_with_cycle_marker() -> None:
    value: list[Any] = [1]
    value.append(value)
    assert decoded(value) == [1, "<cycle>"]


def test_self_referencing_object_encodes_with_cycle_marker() -> None:
    value = Plain()
    value.me = value  # type: ignore[attr-defined]
    assert decoded(value) == {"a": 1, "b": "two", "me": "<cycle>"}


def test_shared_non_cyclic_reference_is_not_a_cycle() -> None:
    shared = [1]
    value: list[Any] = [shared, shared, 2**100]  # the big int forces the sanitizer path
    assert decoded(value) == [[1], [1], str(2**100)]


def test_deeply_nested_list_is_cut_at_max_depth() -> None:
    value: list[Any] = []
    for _ in range(10_000):
        value = [value]
    result = decoded(value)
    assert nesting_depth(result) == 64
    for _ in range(64):
        result = result[0]
    assert result == "<max depth>"


def test_int_beyond_64_bits_encodes_as_string() -> None:
    assert decoded({"n": 2**100, "m": -(2**64)}) == {"n": str(2**100), "m": str(-(2**64))}


def test_int_within_unsigned_64_bits_stays_a_number() -> None:
    assert decoded(2**64 - 1) == 2**64 - 1


def test_dict_with_int_keys_encodes_keys_as_strings() -> None:
    assert decoded({1: "a", 2: "b"}) == {"1": "a", "2": "b"}


def test_dict_with_tuple_keys_encodes_keys_as_str() -> None:
    assert decoded({(1, 2): "a", 3: "b"}) == {"(1, 2)": "a", "3": "b"}


def test_nan_and_infinity_encode_as_null() -> None:
    assert decoded([float("nan"), float("inf"), float("-inf")]) == [None, None, None]


def test_lone_surrogate_is_replaced_not_fatal() -> None:
    assert decoded({"k\ud800": "v\udc00"}) == {"k\ufffd": "v\ufffd"}


def test_none_encodes_as_json_null() -> None:
    assert to_json(None) == ("null", False)


# --- size cap --------------------------------------------------------------------------------


def test_value_over_cap_becomes_truncation_object() -> None:
    full = orjson.dumps({"a": "x" * 100})
    text, truncated = to_json({"a": "x" * 100}, cap=10)
    assert truncated
    assert orjson.loads(text) == {TRUNCATED_KEY: len(full), HEAD_KEY: full[:10].decode()}


def test_value_exactly_at_cap_is_not_truncated() -> None:
    text, truncated = to_json("abc", cap=5)
    assert (text, truncated) == ('"abc"', False)


def test_truncated_head_drops_partial_multibyte_character() -> None:
    text, truncated = to_json("é" * 10, cap=4)  # '"' + 'é' + half of the next 'é'
    assert truncated
    assert orjson.loads(text) == {TRUNCATED_KEY: 22, HEAD_KEY: '"é'}


def test_cap_none_never_truncates() -> None:
    assert to_json("x" * 10_000, cap=None) == (orjson.dumps("x" * 10_000).decode(), False)


def test_cap_applies_to_sanitized_output() -> None:
    value: list[Any] = ["y" * 50]
    value.append(value)
    text, truncated = to_json(value, cap=8)
    assert truncated
    assert orjson.loads(text)[HEAD_KEY] == '["yyyyyy'


# --- cap_text --------------------------------------------------------------------------------


def test_cap_text_leaves_short_text_alone() -> None:
    assert cap_text("hello", 5) == ("hello", False)


def test_cap_text_cuts_long_text_with_marker() -> None:
    assert cap_text("hello world", 5) == ("hello…[+6 chars]", True)


def test_cap_text_passes_none_through() -> None:
    assert cap_text(None, 5) == (None, False)


def test_cap_text_without_cap_returns_text_unchanged() -> None:
    assert cap_text("x" * 1000, None) == ("x" * 1000, False)


# --- encode_many -----------------------------------------------------------------------------


def test_encode_many_returns_one_element_per_input_in_order() -> None:
    values = [1, "a", {"k": [1, 2]}, None, 2.5]
    array, n_truncated = encode_many(values)
    assert array.type == pa.large_string()
    assert array.to_pylist() == ["1", '"a"', '{"k":[1,2]}', "null", "2.5"]
    assert n_truncated == 0


def test_encode_many_none_is_json_null_not_arrow_null() -> None:
    array, _ = encode_many([None])
    assert array.null_count == 0
    assert array.to_pylist() == ["null"]


def test_encode_many_handles_empty_input() -> None:
    array, n_truncated = encode_many([])
    assert len(array) == 0
    assert array.type == pa.large_string()
    assert n_truncated == 0


def test_encode_many_matches_to_json_for_mixed_failing_and_fine_values() -> None:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    values: list[object] = [
        {"ok": 1},
        cyclic,
        2**100,
        BadRepr(),
        Decimal("1.5"),
        {(1, 2): 3},
        Plain(),
        np.arange(3),
        None,
    ]
    array, n_truncated = encode_many(values)
    array.validate(full=True)
    assert array.to_pylist() == [to_json(v)[0] for v in values]
    assert n_truncated == 0


def test_encode_many_counts_truncated_values() -> None:
    values = ["short", "x" * 100, {"k": "y" * 100}, None]
    array, n_truncated = encode_many(values, cap=20)
    assert n_truncated == 2
    texts = array.to_pylist()
    assert texts == [to_json(v, cap=20)[0] for v in values]
    assert [TRUNCATED_KEY in orjson.loads(t) for t in texts[1:3]] == [True, True]


class BrokenSequence(Sequence[object]):
    """Yields two values, then its iteration blows up."""

    def __len__(self) -> int:
        return 5

    @overload
    def __getitem__(self, index: int) -> object: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[object]: ...
    def __getitem__(self, index: int | slice) -> object:
        raise NotImplementedError

    def __iter__(self) -> Iterator[object]:
        yield 1
        yield 2
        raise RuntimeError("iteration failed")


def test_encode_many_keeps_encoded_prefix_when_iteration_fails() -> None:
    array, _ = encode_many(BrokenSequence())
    assert array.to_pylist() == ["1", "2"]


# --- property --------------------------------------------------------------------------------

json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=12,
)


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(st.lists(json_like, max_size=3))
def test_json_like_values_round_trip_and_encode_many_agrees(values: list[Any]) -> None:
    texts = [to_json(v)[0] for v in values]
    assert [orjson.loads(t) for t in texts] == values
    array, n_truncated = encode_many(values)
    assert array.to_pylist() == texts
    assert n_truncated == 0


@pytest.mark.parametrize("cap", [0, 1, 7, 64])
def test_truncated_output_is_always_valid_json(cap: int) -> None:
    value = {"text": "naïve ☃ 日本語 " * 20, "n": list(range(50))}
    text, truncated = to_json(value, cap=cap)
    assert truncated
    parsed = orjson.loads(text)
    assert parsed[TRUNCATED_KEY] == len(orjson.dumps(value))


def test_a_long_list_cut_at_the_cap_stays_valid_json_even_with_unencodable_elements() -> None:
    import threading

    lock = threading.Lock()  # orjson cannot encode it: the sanitizer stores its repr
    value = {"catalog": [{"i": i} for i in range(300)] + [lock] + [{"i": 0}] * 5000}
    text, cut = to_json(value, 2000)
    parsed = orjson.loads(text)
    assert cut and parsed["$truncated"] > 2000 and parsed["$head"].startswith('{"catalog":[')
    whole, cut_whole = to_json({"catalog": [1] * 300 + [lock]}, 10**6)
    assert not cut_whole and orjson.loads(whole)["catalog"][-1].startswith("<unlocked")
