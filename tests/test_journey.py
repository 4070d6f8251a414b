"""`lake.journey()` and `lake.funnel()` on a small hand-built pipeline, with exact values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import polars as pl
import pytest

import xray_lake as xr
from xray_lake.query.journey import FUNNEL_COLUMNS, STEP_COLUMNS, funnel, journey, ordinal

Item = dict[str, Any]

# p-3 and p-2 are too expensive, p-5 has no stock; p-1, p-4, p-6 are scored and the rerank
# keeps the best two, so p-4 is cut there.
PRODUCTS: list[Item] = [
    {"id": "p-1", "price": 40.0, "stock": 3},
    {"id": "p-2", "price": 180.0, "stock": 1},
    {"id": "p-3", "price": 129.0, "stock": 5},
    {"id": "p-4", "price": 20.0, "stock": 2},
    {"id": "p-5", "price": 60.0, "stock": 0},
    {"id": "p-6", "price": 90.0, "stock": 9},
]
SCORES = {"p-1": 0.5, "p-4": 0.2, "p-6": 0.9}


class Boom(RuntimeError):
    """The search backend failing."""


def _verdict(p: Item) -> Item:
    if p["price"] > 100:
        return {**p, "ok": False, "why": "price_too_high",
                "text": f"Price {p['price']:.2f} above max 100"}
    if p["stock"] == 0:
        return {**p, "ok": False, "why": "out_of_stock", "text": "no stock"}
    return {**p, "ok": True, "why": None, "text": None}


def shop_pipeline(label: str) -> Any:
    """search (6) -> price-filter (3 pass) -> relevance -> rerank (top 2), as pipeline `label`."""

    @xr.pipeline(label, id="run_id")
    class Shop:
        def __init__(self, run_id: str, fail: bool = False) -> None:
            self.run_id = run_id
            self.fail = fail

        @xr.entrypoint
        def search_page(self) -> list[Item]:
            checked = self.price_filter(self.search())
            scored = self.relevance([p for p in checked if p["ok"]])
            return self.rerank(scored)

        @xr.retrieval_stage("search", id="id")
        def search(self) -> list[Item]:
            if self.fail:
                raise Boom("backend down")
            return list(PRODUCTS)

        @xr.filtering_stage("price-filter", id="id", passed="ok", reason_label="why",
                            reason_text="text")
        def price_filter(self, products: Annotated[list[Item], xr.Candidates()]) -> list[Item]:
            return [_verdict(p) for p in products]

        @xr.scoring_stage("relevance", id="id", score="score")
        def relevance(self, products: Annotated[list[Item], xr.Candidates()]) -> list[Item]:
            return [{**p, "score": SCORES[p["id"]]} for p in products]

        @xr.ranking_stage("rerank", id="id")
        def rerank(self, products: Annotated[list[Item], xr.Candidates()]) -> list[Item]:
            return sorted(products, key=lambda p: -p["score"])[:2]

    return Shop


@pytest.fixture
def shop(lake: Callable[[], xr.Lake]) -> xr.Lake:
    """Run r-17 of `shop`, a decoy run of another label, and a failed run r-18."""
    shop_class, other = shop_pipeline("shop"), shop_pipeline("other")
    shop_class("r-17").search_page()
    other("r-99").search_page()
    with pytest.raises(Boom):
        shop_class("r-18", fail=True).search_page()
    return lake()


def test_dropped_candidate_names_the_stage_reason_and_text(shop: xr.Lake) -> None:
    path = shop.journey("r-17", "p-3")
    assert path.verdict == "dropped at price-filter: price_too_high (Price 129.00 above max 100)"
    assert path.steps.schema == pl.Schema(STEP_COLUMNS)
    assert path.steps.rows() == [
        (1, "search", "retrieval", None, 2, None, None, None, None),
        (2, "price-filter", "filtering", 2, None, False, "price_too_high",
         "Price 129.00 above max 100", None),
    ]
    assert str(path) == path.verdict


def test_ranked_candidate_gets_its_final_place(shop: xr.Lake) -> None:
    path = shop.journey("r-17", "p-6")
    assert path.verdict == "ranked 1st of 2 at rerank"
    assert path.steps.select("seq", "stage", "in_position", "out_position", "passed",
                             "score").rows() == [
        (1, "search", None, 5, None, None),
        (2, "price-filter", 5, 2, True, None),
        (3, "relevance", 2, 2, None, 0.9),
        (4, "rerank", 2, 0, None, None),
    ]
    assert shop.journey("r-17", "p-1").verdict == "ranked 2nd of 2 at rerank"


def test_candidate_cut_by_the_ranking_says_where_it_entered_and_its_score_by_the_cutoff(
        shop: xr.Lake) -> None:
    path = shop.journey("r-17", "p-4")
    # rerank records no scores: both come from relevance (p-4 0.2; p-1, the last kept, 0.5)
    assert path.verdict == ("cut at rerank: entered 2nd of 3, not among the 2 it returned "
                            "(score 0.2 at relevance, cutoff 0.5)")
    assert path.steps["stage"].to_list() == ["search", "price-filter", "relevance", "rerank"]


def test_candidate_absent_from_the_run_was_never_retrieved(shop: xr.Lake) -> None:
    path = shop.journey("r-17", "p-404")
    assert path.verdict == "never retrieved in run r-17"
    assert path.steps.is_empty() and path.steps.schema == pl.Schema(STEP_COLUMNS)


def test_never_retrieved_in_a_failed_run_names_the_failure(shop: xr.Lake) -> None:
    path = shop.journey("r-18", "p-1")
    assert path.verdict == "never retrieved in run r-18 (the run failed at search: Boom)"


def test_unknown_run_says_so(shop: xr.Lake) -> None:
    path = shop.journey("r-404", "p-1")
    assert path.verdict == "no run r-404 in the lake"
    assert path.steps.is_empty()


def test_candidate_id_of_another_type_is_matched_as_a_string(shop: xr.Lake) -> None:
    assert journey(shop, "r-17", 3).verdict == "never retrieved in run r-17"  # type: ignore[arg-type]


def test_funnel_lists_each_stage_with_counts_reasons_and_ratios(shop: xr.Lake) -> None:
    rows = shop.funnel("r-17")
    assert rows.schema == pl.Schema(FUNNEL_COLUMNS)
    assert rows.drop("duration_ms").rows() == [
        (1, "search", "retrieval", "success", None, 6, None, None),
        (2, "price-filter", "filtering", "success", 6, 3, 0.5,
         "price_too_high 2, out_of_stock 1"),
        (3, "relevance", "scoring", "success", 3, 3, None, None),
        (4, "rerank", "ranking", "success", 3, 2, None, None),
    ]
    assert rows["duration_ms"].min() >= 0  # type: ignore[operator]


def test_funnel_of_a_failed_run_shows_the_failed_stage(shop: xr.Lake) -> None:
    rows = shop.funnel("r-18")
    assert rows.select("name", "status").rows() == [("search", "failure")]


def test_funnel_of_an_unknown_run_is_empty_with_the_same_columns(shop: xr.Lake) -> None:
    rows = funnel(shop, "r-404")
    assert rows.is_empty() and rows.schema == pl.Schema(FUNNEL_COLUMNS)


def test_stage_and_candidate_scans_are_restricted_to_the_runs_partition(
        shop: xr.Lake) -> None:
    seen: list[tuple[str, Any]] = []

    class Recording:
        def sql(self, sql: str, params: Any = None) -> pl.DataFrame:
            seen.append((sql, params))
            return shop.sql(sql, params)

    journey(Recording(), "r-17", "p-3")
    date = shop.sql("select date from runs where run_id = 'r-17'").item()
    scans = [(sql, params) for sql, params in seen if "from runs" not in sql]
    assert len(scans) == 2  # stages, candidates
    for sql, params in scans:
        assert "(label = ? and date = ?)" in sql
        assert params[-2:] == ["shop", date]


def test_ordinal_suffixes() -> None:
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]
