"""Framework shapes: dict-shaped stages (input_key=/output_key=), dotted field paths, scores
on retrieval stages, and the typed results in the context-manager API."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import pydantic
import pytest

import xray_lake as xr
from tests._captured import Captured, Tables
from xray_lake.records.values import read_field

Recorded = Callable[[], Captured]


@dataclass
class Document:
    """Like a Haystack Document: fields, with metadata in a dict."""

    id: str
    content: str
    meta: dict[str, Any] = field(default_factory=dict)
    score: float | None = None


class Meta(pydantic.BaseModel):
    ok: bool
    why: str | None = None


class Doc(pydantic.BaseModel):
    id: str
    meta: Meta


def _docs() -> list[Document]:
    return [Document(str(i), f"text {i}", {"passed": i % 2 == 0, "reason": f"r{i % 3}"},
                     score=1.0 - i / 10) for i in range(6)]


def _candidates(db: Tables, stage: str) -> list[dict[str, Any]]:
    return db.sql("select candidate_id, in_position, out_position, passed, reason_label, score "
                  "from candidates where stage_name = ? order by in_position nulls last, "
                  "out_position", [stage]).to_dicts()


# --- dotted paths ------------------------------------------------------------------------


def test_read_field_follows_dotted_paths_through_dicts_attributes_and_lists() -> None:
    doc = Document("a", "x", {"tags": ["red", "blue"], "inner": {"deep": 3}})
    assert read_field(doc, "meta.inner.deep") == 3
    assert read_field(doc, "meta.tags.1") == "blue"
    assert read_field({"meta": doc}, "meta.meta.tags.0") == "red"
    assert read_field(doc, "meta.missing.deep") is None
    assert read_field(doc, "meta.tags.7") is None


def test_a_key_with_dots_in_its_name_wins_over_the_path() -> None:
    assert read_field({"meta.reason": "flat", "meta": {"reason": "nested"}}, "meta.reason") \
        == "flat"


def test_filtering_stage_reads_pass_flag_and_reason_from_dotted_paths(captured: Recorded) -> None:
    @xr.filtering_stage("comp-filter", passed="meta.passed", reason_label="meta.reason")
    def keep(documents: list[Document]) -> list[Document]:
        return documents

    keep(_docs())
    rows = _candidates(captured(), "comp-filter")
    assert [r["passed"] for r in rows] == [True, False, True, False, True, False]
    failed = {r["candidate_id"]: r["reason_label"] for r in rows if not r["passed"]}
    assert failed == {"1": "r1", "3": "r0", "5": "r2"}


def test_dotted_paths_read_plain_dicts_too(captured: Recorded) -> None:
    items = [{"doc": {"key": f"k{i}", "rank": {"value": i / 4}}} for i in range(4)]

    @xr.scoring_stage("s", id="doc.key", score="doc.rank.value")
    def score(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return items

    score(items)
    rows = _candidates(captured(), "s")
    assert [(r["candidate_id"], r["score"]) for r in rows] == [
        ("k0", 0.0), ("k1", 0.25), ("k2", 0.5), ("k3", 0.75)]


def test_promoted_fields_take_dotted_paths(captured: Recorded) -> None:
    @xr.retrieval_stage("r", fields={"reason": "meta.reason"})
    def retrieve() -> list[dict[str, Any]]:
        return [{"id": "a", "meta": {"reason": "x"}}, {"id": "b", "meta": {"reason": "y"}}]

    retrieve()
    db = captured()
    assert db.sql("select f_reason from candidates order by candidate_id")["f_reason"] \
        .to_list() == ["x", "y"]


def test_a_dotted_path_through_declared_types_is_checked_at_decoration() -> None:
    with pytest.raises(xr.DecorationError) as info:
        @xr.filtering_stage("f", passed="meta.okay")
        def check(docs: list[Doc]) -> list[Doc]:
            return docs

    message = str(info.value)
    assert "passed='meta.okay'" in message and "'okay' names no field" in message
    assert "ok, why" in message and "Fix:" in message

    @xr.filtering_stage("f", passed="meta.ok", reason_label="meta.why")  # a valid path
    def fine(docs: list[Doc]) -> list[Doc]:
        return docs


def test_a_dotted_path_into_an_open_dict_is_not_second_guessed() -> None:
    @xr.filtering_stage("f", passed="meta.anything.at_all")
    def check(docs: list[Document]) -> list[Document]:
        return docs


@pytest.mark.parametrize("mapping", [{"passed": "meta..ok"}, {"passed": ".ok"},
                                     {"reason_label": "meta."}, {"passed": ""},
                                     {"passed": 3}])
def test_malformed_mappings_raise_at_decoration_with_the_fix(mapping: dict[str, Any]) -> None:
    with pytest.raises(xr.DecorationError, match="Fix:"):
        xr.filtering_stage("f", **mapping)(lambda docs: docs)


def test_the_context_manager_api_checks_mappings_too() -> None:
    with pytest.raises(xr.DecorationError, match="empty part"):
        xr.stage("f", type="filtering", passed="meta..ok")


# --- input_key / output_key ---------------------------------------------------------------


class Component:
    """A Haystack-style component: takes and returns dicts of named lists."""

    @xr.filtering_stage("comp-filter", passed="meta.passed", reason_label="meta.reason",
                        input_key="documents", output_key="documents")
    def run(self, documents: Annotated[dict[str, list[Document]], xr.Candidates()]
            ) -> dict[str, list[Document]]:
        return {"documents": documents["documents"], "other": 1}


def test_output_key_records_the_list_inside_a_returned_dict(captured: Recorded) -> None:
    result = Component().run({"documents": _docs()})
    assert result["other"] == 1 and len(result["documents"]) == 6  # returned untouched
    db = captured()
    stage = db.sql("select n_in, n_out, n_failed, validation_error from stages").to_dicts()[0]
    assert stage == {"n_in": 6, "n_out": 3, "n_failed": 3, "validation_error": None}
    assert len(_candidates(db, "comp-filter")) == 6


def test_survivors_only_filter_with_dict_input_and_output(captured: Recorded) -> None:
    @xr.filtering_stage("keep-even", input_key="documents", output_key="documents")
    def run(documents: dict[str, list[Document]]) -> dict[str, list[Document]]:
        return {"documents": [d for d in documents["documents"] if int(d.id) % 2 == 0]}

    run({"documents": _docs()})
    rows = _candidates(captured(), "keep-even")
    assert [(r["candidate_id"], r["passed"]) for r in rows] == [
        ("0", True), ("1", False), ("2", True), ("3", False), ("4", True), ("5", False)]


def test_retrieval_stage_reads_documents_and_scores_from_a_dict_result(captured: Recorded) -> None:
    @xr.retrieval_stage("bm25", score="score", output_key="documents")
    def retrieve(query: str) -> dict[str, list[Document]]:
        return {"documents": _docs()[:3]}

    retrieve("shoe")
    db = captured()
    rows = _candidates(db, "bm25")
    assert [(r["candidate_id"], r["score"]) for r in rows] == [("0", 1.0), ("1", 0.9), ("2", 0.8)]
    stage = db.sql("select n_out, score_max, score_min, validation_error from stages").to_dicts()
    assert stage == [{"n_out": 3, "score_max": 1.0, "score_min": 0.8, "validation_error": None}]


def test_output_key_missing_from_the_result_is_a_validation_error(captured: Recorded) -> None:
    @xr.retrieval_stage("r", output_key="documents")
    def retrieve() -> dict[str, Any]:
        return {"docs": []}

    assert retrieve() == {"docs": []}
    error = captured().sql("select validation_error from stages")["validation_error"][0]
    assert "returned dict" in error


def test_context_manager_stage_takes_input_and_output_keys(captured: Recorded) -> None:
    with xr.run("ctx") as run, run.stage("f", type="filtering", passed="meta.passed",
                                         input_key="documents", output_key="documents") as st:
        st.input({"documents": _docs()})
        st.output({"documents": _docs()})
    assert len(_candidates(captured(), "f")) == 6


def test_input_key_without_a_candidate_parameter_raises_with_the_fix() -> None:
    with pytest.raises(xr.DecorationError, match=r"input_key='documents'.*Fix: annotate"):
        @xr.retrieval_stage("r", input_key="documents")
        def retrieve(query: str, top_k: int) -> list[dict[str, Any]]:
            return []


def test_output_key_on_a_generator_raises_with_the_fix() -> None:
    with pytest.raises(xr.DecorationError, match=r"generator.*Fix: drop output_key="):
        @xr.retrieval_stage("r", output_key="documents")
        def retrieve(query: str) -> Any:
            yield {"id": "a"}


def test_keys_on_a_raw_stage_raise() -> None:
    with pytest.raises(xr.DecorationError, match="raw stage"):
        xr.stage("r", type="raw", output_key="documents")


def test_output_key_lifts_the_list_return_type_check() -> None:
    @xr.filtering_stage("f", passed="ok", output_key="items")  # -> dict is fine with a key
    def run(items: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        return {"items": items}

    with pytest.raises(xr.DecorationError, match="returns its candidates as a list"):
        @xr.filtering_stage("f", passed="ok")
        def run2(items: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
            return {"items": items}


# --- score= on retrieval ------------------------------------------------------------------


def test_retrieval_score_is_checked_against_declared_fields() -> None:
    with pytest.raises(xr.DecorationError, match="score='relevance' names no field of Document"):
        @xr.retrieval_stage("r", score="relevance")
        def retrieve(query: str) -> list[Document]:
            return []


def test_retrieval_without_score_records_no_scores(captured: Recorded) -> None:
    @xr.retrieval_stage("r")
    def retrieve() -> list[Document]:
        return _docs()[:2]

    retrieve()
    db = captured()
    assert [r["score"] for r in _candidates(db, "r")] == [None, None]
    assert db.sql("select score_max from stages")["score_max"][0] is None


# --- typed results in the context-manager API --------------------------------------------


def test_filtered_results_in_a_context_manager_stage_record_verdicts_and_reasons(
        captured: Recorded) -> None:
    docs = _docs()[:3]
    with xr.run("ctx") as run, run.stage("judge", type="filtering", id="id") as st:
        st.input(docs)
        st.output([xr.Filtered(docs[0], True),
                   xr.Filtered(docs[1], False, "off_topic", "not about shoes"),
                   xr.Filtered(docs[2], False, "duplicate")])
    db = captured()
    rows = db.sql("select candidate_id, passed, reason_label, reason_text from candidates "
                  "order by candidate_id").to_dicts()
    assert rows == [
        {"candidate_id": "0", "passed": True, "reason_label": None, "reason_text": None},
        {"candidate_id": "1", "passed": False, "reason_label": "off_topic",
         "reason_text": "not about shoes"},
        {"candidate_id": "2", "passed": False, "reason_label": "duplicate", "reason_text": None},
    ]
    stage = db.sql("select reason_counts from stages").to_dicts()[0]
    assert dict(stage["reason_counts"]) == {"off_topic": 1, "duplicate": 1}


def test_scored_results_in_a_context_manager_stage_record_scores(captured: Recorded) -> None:
    docs = _docs()[:3]
    with xr.run("ctx") as run, run.stage("rank", type="ranking") as st:
        st.input(docs)
        st.output([xr.Scored(docs[2], 0.9), xr.Scored(docs[0], 0.5)])
    rows = _candidates(captured(), "rank")
    assert [(r["candidate_id"], r["in_position"], r["out_position"], r["score"])
            for r in rows] == [("0", 0, 1, 0.5), ("1", 1, None, None), ("2", 2, 0, 0.9)]


def test_started_and_finished_at_record_a_run_that_already_happened(captured: Recorded) -> None:
    start = 1_700_000_000.0  # 2023-11-14
    with xr.run("past", started_at=start, finished_at=start + 2) as run, \
            run.stage("s", type="raw", started_at=start + 0.5, finished_at=start + 1.5):
        pass
    db = captured()
    r = db.sql("select date, duration_ms, epoch(started_at) t from runs").to_dicts()[0]
    assert r["date"] == "2023-11-14" and r["t"] == pytest.approx(start)
    assert r["duration_ms"] == pytest.approx(2000, abs=5)
    s = db.sql("select duration_ms, epoch(started_at) t from stages").to_dicts()[0]
    assert s["t"] == pytest.approx(start + 0.5) and s["duration_ms"] == pytest.approx(1000)


def test_started_at_without_finished_at_is_refused() -> None:
    with pytest.raises(xr.XrayLakeError, match="together"):
        xr.run("past", started_at=1.0)


def test_input_json_of_a_dict_stage_keeps_the_other_arguments(captured: Recorded) -> None:
    @xr.filtering_stage("f", passed="meta.passed", input_key="documents")
    def run(documents: Annotated[dict[str, Any], xr.Candidates()], top_k: int) -> list[Any]:
        return documents["documents"]

    run({"documents": _docs()}, 3)
    raw = captured().sql("select input_json from stages")["input_json"][0]
    assert json.loads(raw) == {"top_k": 3}


# --- candidates= (plain annotations) ------------------------------------------------------


def test_candidates_names_the_list_parameter_without_a_marker(captured: Recorded) -> None:
    @xr.scoring_stage("s", score="meta.score", candidates="documents", output_key="documents")
    def run(documents: list[Document], query: str) -> dict[str, list[Document]]:
        for doc in documents:
            doc.meta["score"] = len(query) / (1 + int(doc.id))
        return {"documents": documents}

    run(_docs()[:3], "abcd")
    db = captured()
    assert [r["score"] for r in _candidates(db, "s")] == [4.0, 2.0, 4 / 3]
    assert json.loads(db.sql("select input_json from stages")["input_json"][0]) == {
        "query": "abcd"}


def test_candidates_naming_no_parameter_raises_with_the_parameters() -> None:
    with pytest.raises(xr.DecorationError, match=r"candidates='docs' names no parameter "
                                                 r"\(parameters: documents, query\)"):
        @xr.scoring_stage("s", candidates="docs")
        def run(documents: list[Document], query: str) -> list[Document]:
            return documents


def test_candidates_and_a_marker_on_another_parameter_conflict() -> None:
    with pytest.raises(xr.DecorationError, match="two candidate lists"):
        @xr.filtering_stage("f", candidates="other")
        def run(documents: Annotated[list[Document], xr.Candidates()],
                other: list[Document]) -> list[Document]:
            return documents
