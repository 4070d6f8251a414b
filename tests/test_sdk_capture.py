"""What a stage records about its candidates: ids, verdicts, scores, positions, payloads."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import pydantic
import pytest

import xray_lake as xr
from tests._captured import Captured, Tables

Recorded = Callable[[], Captured]
Item = dict[str, Any]


def _rows(db: Tables, stage: str, order: str = "in_position nulls last") -> list[dict[str, Any]]:
    return db.sql(
        "select candidate_id, in_position, out_position, passed, reason_label, reason_text, "
        f"score, reason, payload from candidates where stage_name = ? order by {order}",
        [stage],
    ).to_dicts()


def _stage(db: Tables, name: str) -> dict[str, Any]:
    rows = db.sql("select * from stages where name = ?", [name]).to_dicts()
    assert len(rows) == 1, rows
    return rows[0]


# --- field mappings on every kind of candidate -------------------------------------------


@dataclass
class ProductDC:
    sku: str
    price: int
    ok: bool = True
    why: str | None = None
    detail: str | None = None


class ProductModel(pydantic.BaseModel):
    sku: str
    price: int
    ok: bool = True
    why: str | None = None
    detail: str | None = None


class ProductObj:
    def __init__(self, sku: str, price: int, ok: bool = True, why: str | None = None,
                 detail: str | None = None) -> None:
        self.sku, self.price, self.ok, self.why, self.detail = sku, price, ok, why, detail


def _make_dict(sku: str, price: int) -> Any:
    return {"sku": sku, "price": price}


def _set(item: Any, **values: Any) -> Any:
    if isinstance(item, dict):
        item.update(values)
    else:
        for key, value in values.items():
            setattr(item, key, value)
    return item


KINDS: dict[str, Callable[[str, int], Any]] = {
    "dict": _make_dict,
    "object": ProductObj,
    "dataclass": ProductDC,
    "pydantic": lambda sku, price: ProductModel(sku=sku, price=price),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_filtering_field_mappings_read_dict_keys_attributes_and_model_fields(
    kind: str, captured: Recorded
) -> None:
    make = KINDS[kind]

    @xr.filtering_stage("price-filter", id="sku", passed="ok", reason_label="why",
                        reason_text="detail")
    def price_filter(items: list[Any]) -> list[Any]:
        for item in items:
            price = item["price"] if isinstance(item, dict) else item.price
            if price >= 50:
                _set(item, ok=False, why="too_expensive", detail=f"{price} >= 50")
            else:
                _set(item, ok=True)
        return items

    price_filter([make("a", 10), make("b", 70), make("c", 20), make("d", 90)])

    db = captured()
    rows = _rows(db, "price-filter")
    assert [(r["candidate_id"], r["in_position"], r["out_position"], r["passed"],
             r["reason_label"], r["reason_text"]) for r in rows] == [
        ("a", 0, 0, True, None, None),
        ("b", 1, None, False, "too_expensive", "70 >= 50"),
        ("c", 2, 1, True, None, None),
        ("d", 3, None, False, "too_expensive", "90 >= 50"),
    ]
    assert json.loads(rows[1]["payload"])["price"] == 70
    assert json.loads(rows[1]["payload"])["sku"] == "b"
    stage = _stage(db, "price-filter")
    assert (stage["n_in"], stage["n_out"], stage["n_passed"], stage["n_failed"]) == (4, 2, 2, 2)
    assert stage["fail_ratio"] == 0.5
    assert dict(stage["reason_counts"]) == {"too_expensive": 2}
    assert stage["validation_error"] is None


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_scoring_stage_reads_a_mapped_score_field(kind: str, captured: Recorded) -> None:
    make = KINDS[kind]

    @xr.scoring_stage("relevance", id="sku", score="price")
    def relevance(items: list[Any]) -> list[Any]:
        return items

    relevance([make("a", 3), make("b", 1), make("c", 2)])

    db = captured()
    rows = _rows(db, "relevance")
    assert [(r["candidate_id"], r["score"]) for r in rows] == [("a", 3.0), ("b", 1.0), ("c", 2.0)]
    stage = _stage(db, "relevance")
    assert (stage["score_min"], stage["score_max"], stage["score_mean"]) == (1.0, 3.0, 2.0)
    assert stage["n_score_null"] == 0


def test_scoring_stage_default_score_field_is_score(captured: Recorded) -> None:
    @xr.scoring_stage
    def rate(items: list[Item]) -> list[Item]:
        return [{**c, "score": c["id"] * 0.5} for c in items]

    rate([{"id": 1}, {"id": 2}])
    assert [r["score"] for r in _rows(captured(), "rate")] == [0.5, 1.0]


def test_generation_stage_reads_a_mapped_reason_field(captured: Recorded) -> None:
    @xr.generation_stage("keywords", id="text", reason="because")
    def keywords(title: str) -> list[Item]:
        return [{"text": w, "because": "title word" if i else ""}
                for i, w in enumerate(title.split())]

    keywords("red running shoe")

    db = captured()
    rows = _rows(db, "keywords", order="out_position")
    assert [(r["candidate_id"], r["out_position"], r["reason"]) for r in rows] == [
        ("red", 0, ""), ("running", 1, "title word"), ("shoe", 2, "title word")]
    stage = _stage(db, "keywords")
    assert (stage["n_generated"], stage["n_empty_reason"], stage["n_out"]) == (3, 1, 3)


def test_retrieval_stage_records_every_result_with_duplicates_counted(captured: Recorded) -> None:
    @xr.retrieval_stage("search", id="sku")
    def search(query: str) -> list[Item]:
        return [{"sku": s} for s in ("a", "b", "a", "c")]

    search("q")

    db = captured()
    rows = _rows(db, "search", order="out_position")
    assert [(r["candidate_id"], r["out_position"], r["in_position"]) for r in rows] == [
        ("a", 0, None), ("b", 1, None), ("a", 2, None), ("c", 3, None)]
    stage = _stage(db, "search")
    assert (stage["n_out"], stage["n_unique"]) == (4, 3)
    assert stage["duplicate_ratio"] == pytest.approx(0.25)


# --- typed result helpers ---------------------------------------------------------------


def test_filtered_helper_gives_verdicts_and_the_payload_is_the_wrapped_item(captured: Recorded) -> None:
    @xr.filtering_stage("stock")
    def stock(items: list[Item]) -> list[xr.Filtered[Item]]:
        return [xr.Filtered(c, c["qty"] > 0, None if c["qty"] > 0 else "out_of_stock",
                            "none left" if c["qty"] <= 0 else None) for c in items]

    stock([{"id": "a", "qty": 0}, {"id": "b", "qty": 5}])

    db = captured()
    rows = _rows(db, "stock")
    assert [(r["candidate_id"], r["passed"], r["out_position"], r["reason_label"],
             r["reason_text"]) for r in rows] == [
        ("a", False, None, "out_of_stock", "none left"), ("b", True, 0, None, None)]
    assert json.loads(rows[0]["payload"]) == {"id": "a", "qty": 0}
    assert dict(_stage(db, "stock")["reason_counts"]) == {"out_of_stock": 1}


def test_scored_helper_gives_scores_and_null_scores_are_counted(captured: Recorded) -> None:
    @xr.scoring_stage("model")
    def model(items: list[Item]) -> list[xr.Scored[Item]]:
        return [xr.Scored(c, c.get("s")) for c in items]

    model([{"id": "a", "s": 0.25}, {"id": "b"}, {"id": "c", "s": 0.75}])

    db = captured()
    rows = _rows(db, "model")
    assert [(r["candidate_id"], r["score"]) for r in rows] == [
        ("a", 0.25), ("b", None), ("c", 0.75)]
    assert json.loads(rows[1]["payload"]) == {"id": "b"}
    stage = _stage(db, "model")
    assert (stage["n_score_null"], stage["score_mean"]) == (1, 0.5)


def test_generated_helper_gives_reasons(captured: Recorded) -> None:
    @xr.generation_stage("llm")
    def llm(prompt: str) -> list[xr.Generated[Item]]:
        return [xr.Generated({"id": "x"}, "asked for x"), xr.Generated({"id": "y"})]

    llm("p")

    rows = _rows(captured(), "llm", order="out_position")
    assert [(r["candidate_id"], r["reason"], json.loads(r["payload"])) for r in rows] == [
        ("x", "asked for x", {"id": "x"}), ("y", None, {"id": "y"})]


# --- survivors-only filtering -----------------------------------------------------------


def test_survivors_only_filter_records_missing_inputs_as_failed(captured: Recorded) -> None:
    @xr.filtering_stage("cheap")
    def cheap(items: list[Item]) -> list[Item]:
        return [c for c in items if c["price"] < 50]

    items = [{"id": i, "price": p} for i, p in enumerate([10, 70, 20, 90, 30])]
    assert cheap(items) == [items[0], items[2], items[4]]

    db = captured()
    rows = _rows(db, "cheap")
    assert [(r["candidate_id"], r["in_position"], r["out_position"], r["passed"])
            for r in rows] == [
        ("0", 0, 0, True), ("1", 1, None, False), ("2", 2, 1, True), ("3", 3, None, False),
        ("4", 4, 2, True)]
    assert json.loads(rows[3]["payload"]) == {"id": 3, "price": 90}
    stage = _stage(db, "cheap")
    assert (stage["n_in"], stage["n_out"], stage["n_passed"], stage["n_failed"]) == (5, 3, 3, 2)
    assert stage["fail_ratio"] == pytest.approx(0.4)


def test_survivors_only_filter_matches_copied_survivors_by_id(captured: Recorded) -> None:
    @xr.filtering_stage("copying", id="sku")
    def copying(items: list[Item]) -> list[Item]:
        return [{**c, "kept": True} for c in reversed(items) if c["sku"] != "b"]

    copying([{"sku": "a"}, {"sku": "b"}, {"sku": "c"}])

    rows = _rows(captured(), "copying")
    assert [(r["candidate_id"], r["in_position"], r["out_position"], r["passed"])
            for r in rows] == [("a", 0, 1, True), ("b", 1, None, False), ("c", 2, 0, True)]


def test_survivors_only_filter_matches_survivors_by_identity_when_they_have_no_id(
    captured: Recorded,
) -> None:
    @xr.filtering_stage("anon")
    def anon(items: list[Item]) -> list[Item]:
        return [items[2], items[0]]

    anon([{"v": 1}, {"v": 2}, {"v": 3}])

    db = captured()
    rows = _rows(db, "anon")
    assert [(r["in_position"], r["out_position"], r["passed"]) for r in rows] == [
        (0, 1, True), (1, None, False), (2, 0, True)]
    assert "no id" in (_stage(db, "anon")["validation_error"] or "")


def test_survivors_only_filter_that_keeps_nothing_fails_every_input(captured: Recorded) -> None:
    @xr.filtering_stage("none")
    def none(items: list[Item]) -> list[Item]:
        return []

    none([{"id": 1}, {"id": 2}])

    db = captured()
    assert [r["passed"] for r in _rows(db, "none")] == [False, False]
    stage = _stage(db, "none")
    assert (stage["n_in"], stage["n_out"], stage["fail_ratio"]) == (2, 0, 1.0)


def test_filter_with_flags_records_every_returned_candidate_and_missing_ones_as_failed(
    captured: Recorded,
) -> None:
    @xr.filtering_stage("flags", passed="keep")
    def flags(items: list[Item]) -> list[Item]:
        return [{**c, "keep": c["id"] % 2 == 0} for c in items if c["id"] != 3]

    flags([{"id": i} for i in range(5)])

    db = captured()
    rows = _rows(db, "flags")
    assert [(r["candidate_id"], r["in_position"], r["out_position"], r["passed"])
            for r in rows] == [
        ("0", 0, 0, True), ("1", 1, None, False), ("2", 2, 1, True), ("3", 3, None, False),
        ("4", 4, 2, True)]
    stage = _stage(db, "flags")
    assert (stage["n_in"], stage["n_out"], stage["n_failed"]) == (5, 3, 2)


def test_failing_filter_records_its_inputs_without_a_verdict(captured: Recorded) -> None:
    @xr.filtering_stage("explodes")
    def explodes(items: list[Item]) -> list[Item]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        explodes([{"id": 1}, {"id": 2}])

    db = captured()
    rows = _rows(db, "explodes")
    assert [(r["candidate_id"], r["in_position"], r["out_position"], r["passed"])
            for r in rows] == [("1", 0, None, None), ("2", 1, None, None)]
    stage = _stage(db, "explodes")
    assert (stage["status"], stage["n_in"], stage["n_out"], stage["fail_ratio"]) == (
        "failure", 2, None, None)


def test_stage_returning_a_non_list_is_recorded_with_a_validation_error(captured: Recorded) -> None:
    @xr.scoring_stage("odd")
    def odd(items: list[Item]) -> Any:
        return {"not": "a list"}

    assert odd([{"id": 1}]) == {"not": "a list"}

    stage = _stage(captured(), "odd")
    assert stage["status"] == "success"
    assert "expected a list" in stage["validation_error"]
    assert json.loads(stage["output_json"]) == {"not": "a list"}


# --- ranking ----------------------------------------------------------------------------


def test_ranking_records_input_and_output_positions_and_drops_beyond_the_cut(
    captured: Recorded,
) -> None:
    @xr.ranking_stage("top2", score="s")
    def top2(items: list[Item]) -> list[Item]:
        return sorted(items, key=lambda c: -c["s"])[:2]

    top2([{"id": "a", "s": 1}, {"id": "b", "s": 3}, {"id": "c", "s": 2}])

    db = captured()
    rows = _rows(db, "top2")
    assert [(r["candidate_id"], r["in_position"], r["out_position"], r["score"])
            for r in rows] == [("a", 0, None, None), ("b", 1, 0, 3.0), ("c", 2, 1, 2.0)]
    stage = _stage(db, "top2")
    assert (stage["n_in"], stage["n_out"]) == (3, 2)


def test_ranking_metrics_compare_input_and_output_order(captured: Recorded) -> None:
    @xr.ranking_stage("reverse")
    def reverse(items: list[Item]) -> list[Item]:
        return items[::-1]

    @xr.ranking_stage("same")
    def same(items: list[Item]) -> list[Item]:
        return list(items)

    items = [{"id": i} for i in range(4)]
    reverse(items)
    same(items)

    db = captured()
    assert _stage(db, "reverse")["rank_kendall_tau"] == pytest.approx(-1.0)
    assert _stage(db, "same")["rank_kendall_tau"] == pytest.approx(1.0)
    assert _stage(db, "same")["rank_mean_displacement"] == 0


# --- one candidate's journey ------------------------------------------------------------


def test_candidate_id_is_the_same_across_stages_so_a_query_follows_one_candidate(
    captured: Recorded,
) -> None:
    @xr.pipeline("journey", id="rid")
    class Journey:
        rid = "j1"

        @xr.entrypoint
        def go(self) -> list[Item]:
            found = self.search()
            return self.rank(self.score(self.filter(found)))

        @xr.retrieval_stage("search", id="sku")
        def search(self) -> list[Item]:
            return [{"sku": 100 + i, "price": p} for i, p in enumerate([5, 80, 15, 25])]

        @xr.filtering_stage("filter", id="sku")
        def filter(self, items: list[Item]) -> list[Item]:
            return [c for c in items if c["price"] < 50]

        @xr.scoring_stage("score", id="sku")
        def score(self, items: list[Item]) -> list[xr.Scored[Item]]:
            return [xr.Scored(c, c["price"] / 100) for c in items]

        @xr.ranking_stage("rank", id="sku")
        def rank(self, items: list[xr.Scored[Item]]) -> list[Item]:
            return [s.item for s in sorted(items, key=lambda s: -(s.score or 0))]

    Journey().go()

    db = captured()
    path = db.sql(
        "select s.seq, c.stage_name, c.in_position, c.out_position, c.passed, c.score "
        "from candidates c join stages s using (run_id, stage_id) "
        "where c.run_id = 'j1' and c.candidate_id = '102' order by s.seq"
    ).to_dicts()
    assert path == [
        {"seq": 1, "stage_name": "search", "in_position": None, "out_position": 2,
         "passed": None, "score": None},
        {"seq": 2, "stage_name": "filter", "in_position": 2, "out_position": 1,
         "passed": True, "score": None},
        {"seq": 3, "stage_name": "score", "in_position": 1, "out_position": 1,
         "passed": None, "score": 0.15},
        {"seq": 4, "stage_name": "rank", "in_position": 1, "out_position": 1,
         "passed": None, "score": None},
    ]
    dropped = db.sql(
        "select stage_name, passed from candidates where candidate_id = '101' "
        "and passed = false"
    ).to_dicts()
    assert dropped == [{"stage_name": "filter", "passed": False}]


# --- markers: xr.Candidates / xr.RawInput -----------------------------------------------


def test_candidates_marker_picks_the_list_among_several_parameters(captured: Recorded) -> None:
    @xr.filtering_stage("pick")
    def pick(threshold: int, items: Annotated[list[Item], xr.Candidates()],
             note: str = "n") -> list[Item]:
        return [c for c in items if c["v"] > threshold]

    pick(1, [{"id": "a", "v": 1}, {"id": "b", "v": 2}], note="hello")

    db = captured()
    stage = _stage(db, "pick")
    assert (stage["n_in"], stage["n_out"]) == (2, 1)
    assert json.loads(stage["input_json"]) == {"threshold": 1, "note": "hello"}


def test_candidates_passed_by_keyword_are_found(captured: Recorded) -> None:
    @xr.scoring_stage("kw")
    def kw(boost: float, *, items: Annotated[list[Item], xr.Candidates()]) -> list[Item]:
        return [{**c, "score": boost} for c in items]

    kw(2.0, items=[{"id": 1}])
    assert _stage(captured(), "kw")["n_in"] == 1


def test_raw_input_markers_capture_only_the_named_parameters(captured: Recorded) -> None:
    @xr.generation_stage("kw", reason="why")
    def kw(product: Annotated[Item, xr.RawInput("product")],
           secret: str, n: Annotated[int, xr.RawInput("how_many")] = 2) -> list[Item]:
        return [{"id": i, "why": "title"} for i in range(n)]

    kw({"title": "shoe"}, "hunter2")

    stage = _stage(captured(), "kw")
    assert json.loads(stage["input_json"]) == {"product": {"title": "shoe"}, "how_many": 2}


def test_markers_in_string_annotations_of_a_future_annotations_module_are_found(
    captured: Recorded,
) -> None:
    from tests._future_annotated_pipeline import FuturePipeline, Product

    catalog = [Product("a", 10), Product("b", 90), Product("c", 30), Product("d", 20),
               Product("e", 40)]
    result = FuturePipeline("f1").run("shoes", catalog)
    assert [p.sku for p in result] == ["a", "d", "c"]

    db = captured()
    run = db.sql("select label, input_json from runs").to_dicts()[0]
    assert run["label"] == "future-pipeline"
    assert json.loads(run["input_json"])["query"] == "shoes"
    note = _stage(db, "note")
    assert json.loads(note["input_json"]) == {"q": "shoes"}
    keep = _stage(db, "keep")
    assert (keep["n_in"], keep["n_out"]) == (5, 3)
    assert json.loads(keep["input_json"]) == {"limit": 3}
    order = _rows(db, "order", order="out_position")
    assert [(r["candidate_id"], r["score"]) for r in order] == [
        ("a", 10.0), ("d", 20.0), ("c", 30.0)]


# --- snapshot semantics -----------------------------------------------------------------



def _mutate_all(items: list[Any]) -> None:
    for item in items:
        _set(item, sku="changed", price=-1, ok=False, why="later", detail="later", score=-1.0)


def _snapshot_stages() -> dict[str, Callable[[list[Any]], list[Any]]]:
    @xr.retrieval_stage("retrieval", id="sku")
    def retrieval(items: list[Any]) -> list[Any]:
        return items

    @xr.generation_stage("generation", id="sku", reason="why")
    def generation(items: list[Any]) -> list[Any]:
        return items

    @xr.filtering_stage("filtering", id="sku", passed="ok", reason_label="why",
                        reason_text="detail")
    def filtering(items: list[Any]) -> list[Any]:
        return items[:3]  # the fourth input is missing: recorded as failed from the input side

    @xr.filtering_stage("survivors", id="sku")
    def survivors(items: list[Any]) -> list[Any]:
        return items[:2]

    @xr.scoring_stage("scoring", id="sku", score="score")
    def scoring(items: list[Any]) -> list[Any]:
        return items[:3]

    @xr.ranking_stage("ranking", id="sku", score="score")
    def ranking(items: list[Any]) -> list[Any]:
        return items[::-1][:3]

    return {"retrieval": retrieval, "generation": generation, "filtering": filtering,
            "survivors": survivors, "scoring": scoring, "ranking": ranking}


def _fresh(kind: str) -> list[Any]:
    items = [KINDS[kind](f"s{i}", 10 * i) for i in range(4)]
    for i, item in enumerate(items):
        _set(item, ok=i != 1, why=f"why{i}", detail=f"detail{i}", score=float(i))
    return items


@pytest.mark.parametrize("kind", ["dict", "object", "dataclass"])
def test_mutating_candidates_after_the_stage_returned_does_not_change_the_record(
    kind: str, captured: Recorded
) -> None:
    stages = _snapshot_stages()
    expected = {name: _fresh(kind) for name in stages}
    with xr.run("snap", run_id="s1"):
        for stage in stages.values():
            items = _fresh(kind)
            stage(items)
            _mutate_all(items)

    db = captured()
    for name in stages:
        rows = db.sql(
            "select candidate_id, passed, reason_label, reason_text, score, reason, payload "
            "from candidates where stage_name = ?", [name]).to_dicts()
        assert rows, name
        originals = {f"s{i}": item for i, item in enumerate(expected[name])}
        for row in rows:
            assert row["candidate_id"] in originals, (name, row)
            payload = json.loads(row["payload"])
            original = originals[row["candidate_id"]]
            assert payload["sku"] == row["candidate_id"], (name, row)
            price = original["price"] if isinstance(original, dict) else original.price
            assert payload["price"] == price, (name, row)
            assert payload["why"] != "later" and payload.get("score") != -1.0, (name, row)
            assert row["reason_label"] != "later" and row["reason_text"] != "later"
            assert row["reason"] != "later" and row["score"] != -1.0, (name, row)
        if name == "filtering":
            assert sorted((r["candidate_id"], r["passed"]) for r in rows) == [
                ("s0", True), ("s1", False), ("s2", True), ("s3", False)]


def test_mutating_pydantic_candidates_after_the_stage_returned_does_not_change_the_record(
    captured: Recorded,
) -> None:
    @xr.scoring_stage("pyd", id="sku", score="price")
    def pyd(items: list[ProductModel]) -> list[ProductModel]:
        return items[:1]

    items = [ProductModel(sku="a", price=1), ProductModel(sku="b", price=2)]
    pyd(items)
    for item in items:
        item.sku, item.price = "changed", -1

    rows = _rows(captured(), "pyd")
    assert [(r["candidate_id"], r["score"], json.loads(r["payload"])["price"])
            for r in rows] == [("a", 1.0, 1), ("b", None, 2)]


def test_helpers_wrapping_candidates_are_snapshotted_too(captured: Recorded) -> None:
    @xr.scoring_stage("wrapped")
    def wrapped(items: list[Item]) -> list[xr.Scored[Item]]:
        return [xr.Scored(c, 1.0) for c in items]

    items = [{"id": "a", "v": 1}]
    wrapped(items)
    items[0]["v"] = 99

    assert json.loads(_rows(captured(), "wrapped")[0]["payload"]) == {"id": "a", "v": 1}
