"""Id matching between a stage's inputs and outputs: pure functions, tested without a lake."""

from __future__ import annotations

from xray_lake.records.matching import (
    first_index,
    id_strings,
    match_by_identity,
    match_in_order,
    match_rest_by_id,
    survivors_by_identity,
)
from xray_lake.records.results import Scored


def test_ids_are_compared_as_text_and_none_stays_no_id() -> None:
    assert id_strings(["a", None, 7, 2.5]) == ["a", None, "7", "2.5"]
    assert id_strings(("a", "b")) == ["a", "b"]


def test_first_index_keeps_the_first_position_of_a_repeated_key_and_ignores_none() -> None:
    assert first_index(["a", None, "b", "a"]) == {"a": 0, "b": 2}


def test_unique_ids_match_their_position_in_the_targets() -> None:
    assert match_in_order(["c", "a", "x"], ["a", "b", "c"]) == [2, 0, None]


def test_duplicate_ids_pair_up_copy_by_copy_and_no_target_is_claimed_twice() -> None:
    assert match_in_order(["a", "a", "a"], ["a", "b", "a"]) == [0, 2, None]


def test_a_key_without_an_id_matches_nothing_even_where_targets_lack_ids() -> None:
    assert match_in_order([None, "a"], [None, "a"]) == [None, 1]


def test_outputs_without_an_id_match_the_very_same_input_object() -> None:
    first, second = {"name": "x"}, {"name": "y"}
    pos = match_by_identity([None, None], [None, None], [second, {"name": "x"}], [first, second])
    assert pos == [1, None]  # an equal but new object is no match


def test_identity_matching_looks_through_result_helpers_and_keeps_id_matches() -> None:
    item = {"name": "x"}
    inputs = [{"id": "a"}, item]
    pos = match_by_identity(["a", None], [0, None], [inputs[0], Scored(item, 1.0)], inputs)
    assert pos == [0, 1]


def test_identity_matching_never_claims_an_input_an_id_already_took() -> None:
    item = {"id": "a"}
    assert match_by_identity(["a", None], [0, None], [item, item], [item]) == [0, None]


def test_survivors_are_found_by_identity_first() -> None:
    a, b, c = {"id": "a"}, {"id": "b"}, {"id": "c"}
    assert survivors_by_identity([a, b, c], [c, a]) == [1, None, 0]


def test_survivors_that_are_new_objects_are_matched_by_id_in_order() -> None:
    out_pos = [None, 0, None]  # the second input came back as itself at position 0
    in_ids = ["a", "b", "a"]
    survivor_ids = ["b", "a", "a", "z"]
    assert match_rest_by_id(out_pos, in_ids, survivor_ids) == [1, 0, 2]


def test_a_survivor_taken_by_identity_is_not_matched_again_by_id() -> None:
    assert match_rest_by_id([0, None], ["a", "a"], ["a"]) == [0, None]


def test_matching_functions_leave_their_arguments_unchanged() -> None:
    in_pos: list[int | None] = [None]
    out_pos: list[int | None] = [None]
    item = object()
    match_by_identity([None], in_pos, [item], [item])
    match_rest_by_id(out_pos, ["a"], ["a"])
    assert in_pos == [None] and out_pos == [None]
