"""Mistakes visible when a decorator is applied raise there, saying where and how to fix them."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

import pydantic
import pytest

import xray_lake as xr

Item = dict[str, Any]


def _decoration_error(decorate: Callable[[Any], Any], func: Callable[..., Any]) -> str:
    """Apply `decorate` to `func`, expect DecorationError, check it says what, where and how."""
    with pytest.raises(xr.DecorationError) as caught:
        decorate(func)
    message = str(caught.value)
    assert func.__qualname__ in message
    assert f"{func.__code__.co_filename}:{func.__code__.co_firstlineno}" in message
    assert "Fix:" in message
    assert isinstance(caught.value, TypeError)  # DecorationError is also a TypeError
    return message


@dataclass
class Product:
    sku: str
    price: float


class ProductModel(pydantic.BaseModel):
    sku: str
    price: float


def test_two_candidate_lists_are_rejected_at_decoration() -> None:
    def merge(a: Annotated[list[Item], xr.Candidates()],
              b: Annotated[list[Item], xr.Candidates("b")]) -> list[Item]:
        return a + b

    message = _decoration_error(xr.filtering_stage("merge"), merge)
    assert "two candidate lists" in message
    assert "'a'" in message and "'b'" in message


@pytest.mark.parametrize("kind", ["filtering", "scoring", "ranking"])
def test_stage_taking_candidates_with_several_parameters_needs_a_marked_list(kind: str) -> None:
    def stage(items: list[Item], threshold: int) -> list[Item]:
        return items

    message = _decoration_error(getattr(xr, f"{kind}_stage")("s"), stage)
    assert f"a {kind} stage needs its candidate list" in message
    assert "items, threshold" in message
    assert "xr.Candidates()" in message


def test_method_stage_with_one_parameter_besides_self_needs_no_marker() -> None:
    class Pipe:
        @xr.filtering_stage("ok")
        def ok(self, items: list[Item]) -> list[Item]:
            return items

    assert Pipe().ok([{"id": 1}]) == [{"id": 1}]


def test_candidates_marker_without_parentheses_is_rejected_at_decoration() -> None:
    def stage(items: Annotated[list[Item], xr.Candidates], other: int) -> list[Item]:
        return items

    message = _decoration_error(xr.filtering_stage("s"), stage)
    assert "Candidates is used without parentheses on 'items'" in message
    assert "Candidates()" in message


def test_raw_input_marker_without_parentheses_is_rejected_at_decoration() -> None:
    def stage(items: list[Item], query: Annotated[str, xr.RawInput]) -> list[Item]:
        return items

    message = _decoration_error(xr.retrieval_stage("s"), stage)
    assert "RawInput is used without parentheses on 'query'" in message


def test_field_mapping_naming_no_dataclass_field_suggests_the_closest() -> None:
    def score(items: list[Product]) -> list[Product]:
        return items

    message = _decoration_error(xr.scoring_stage("s", id="sku", score="prise"), score)
    assert "score='prise' names no field of Product (fields: sku, price)" in message
    assert "did you mean 'price'?" in message


def test_field_mapping_naming_no_pydantic_field_suggests_the_closest() -> None:
    def keep(items: Annotated[list[ProductModel], xr.Candidates()], n: int) -> list[ProductModel]:
        return items

    message = _decoration_error(xr.filtering_stage("s", id="skus", passed="price"), keep)
    assert "id='skus' names no field of ProductModel (fields: sku, price)" in message
    assert "did you mean 'sku'?" in message


def test_field_mapping_is_checked_against_the_return_type_of_a_producing_stage() -> None:
    def search(query: str) -> list[Product]:
        return []

    message = _decoration_error(xr.retrieval_stage("search", id="skus"), search)
    assert "id='skus' names no field of Product" in message
    assert "did you mean 'sku'?" in message


def test_default_id_mapping_is_not_an_error_for_types_without_an_id_field() -> None:
    @xr.ranking_stage("r")
    def rank(items: list[Product]) -> list[Product]:
        return items

    assert rank([]) == []


def test_duplicate_raw_input_names_are_rejected_at_decoration() -> None:
    def gen(a: Annotated[str, xr.RawInput("x")], b: Annotated[str, xr.RawInput("x")]) -> list[Item]:
        return []

    message = _decoration_error(xr.generation_stage("g"), gen)
    assert "RawInput('x')" in message
    assert "distinct name" in message


def test_candidates_marker_on_star_args_is_rejected_at_decoration() -> None:
    def stage(*items: Annotated[Item, xr.Candidates()]) -> list[Item]:
        return list(items)

    message = _decoration_error(xr.filtering_stage("s"), stage)
    assert "*items" in message


def test_pipeline_id_naming_no_parameter_of_a_function_is_rejected() -> None:
    def handle(query: str, run_id: str) -> None:
        return None

    message = _decoration_error(xr.pipeline("p", id="nope"), handle)
    assert "id='nope' names no parameter" in message


def test_generator_entrypoint_is_rejected_at_decoration() -> None:
    def stream(self: Any) -> Iterator[int]:
        yield 1

    message = _decoration_error(xr.entrypoint, stream)
    assert "cannot be a generator" in message


def test_empty_stage_name_is_rejected_at_decoration() -> None:
    def stage(items: list[Item]) -> list[Item]:
        return items

    message = _decoration_error(xr.ranking_stage("  "), stage)
    assert "stage name is empty" in message


def test_decorating_something_that_is_not_callable_is_rejected() -> None:
    with pytest.raises(xr.DecorationError, match="decorates a function, got int"):
        xr.raw_stage("x")(42)  # type: ignore[arg-type]
    with pytest.raises(xr.DecorationError, match="decorates a class or a function"):
        xr.pipeline("x")(42)


def test_string_annotation_errors_are_found_in_future_annotations_modules() -> None:
    from tests import _future_annotated_pipeline as mod

    with pytest.raises(xr.DecorationError) as bad_field:
        mod.make_bad_field_stage()
    assert "score='prise' names no field of Product" in str(bad_field.value)
    assert "did you mean 'price'?" in str(bad_field.value)
    assert "make_bad_field_stage.<locals>.bad" in str(bad_field.value)

    with pytest.raises(xr.DecorationError) as bare:
        mod.make_bare_marker_stage()
    assert "Candidates is used without parentheses" in str(bare.value)
    assert re.search(r"_future_annotated_pipeline\.py:\d+", str(bare.value))


@pytest.mark.parametrize("kind", [classmethod, staticmethod])
def test_classmethod_or_staticmethod_under_an_xray_decorator_says_to_swap_them(
    kind: type,
) -> None:
    def method(cls: Any, items: list[Item]) -> list[Item]:
        return items

    for decorate in (xr.filtering_stage("f"), xr.entrypoint):
        with pytest.raises(xr.DecorationError) as caught:
            decorate(kind(method))
        message = str(caught.value)
        assert f"put @{kind.__name__} above" in message
        assert method.__qualname__ in message
        assert f"{method.__code__.co_filename}:{method.__code__.co_firstlineno}" in message


def test_classmethod_and_staticmethod_above_stage_decorators_work(
    lake: Callable[[], xr.Lake],
) -> None:
    @xr.pipeline("cm", id="rid")
    class Pipe:
        rid = "cls-run"

        @classmethod
        @xr.filtering_stage("keep")
        def keep(cls, items: list[Item]) -> list[Item]:
            return items[:1]

        @staticmethod
        @xr.ranking_stage("flip")
        def flip(items: list[Item]) -> list[Item]:
            return items[::-1]

        @classmethod
        @xr.entrypoint
        def go(cls, items: list[Item]) -> list[Item]:
            return cls.flip(cls.keep(items))

    assert Pipe.go([{"id": 1}, {"id": 2}]) == [{"id": 1}]

    db = lake()
    assert db.sql("select run_id, label, n_stages from runs").to_dicts() == [
        {"run_id": "cls-run", "label": "cm", "n_stages": 2}]
    assert db.sql("select name from stages order by seq").to_series().to_list() == [
        "keep", "flip"]


class _Product(TypedDict):
    id: str
    price: float


class _ScoredProduct(TypedDict):
    id: str
    price: float
    score: float


def test_a_mapped_field_that_only_the_output_type_has_is_accepted() -> None:
    @xr.scoring_stage("s", score="score")
    def score(items: Annotated[list[_Product], xr.Candidates()]) -> list[_ScoredProduct]:
        return [{"id": p["id"], "price": p["price"], "score": 1.0} for p in items]

    assert score([{"id": "a", "price": 1.0}])[0]["score"] == 1.0


def test_a_mapped_field_that_neither_declared_type_has_is_rejected() -> None:
    with pytest.raises(xr.DecorationError, match="did you mean 'price'"):
        @xr.scoring_stage("s", score="prize")
        def score(items: Annotated[list[_Product], xr.Candidates()]) -> list[_Product]:
            return items
