"""The context-manager API: `with xr.run(...)` and `with run.stage(...)`, sync and async."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

import xray_lake as xr
from tests._captured import Captured
from xray_lake.sdk.recording import current_run

Recorded = Callable[[], Captured]
Item = dict[str, Any]


def test_run_and_stage_blocks_record_a_filtering_stage_with_flags(captured: Recorded) -> None:
    candidates = [{"id": i, "price": p} for i, p in enumerate([10, 70, 20])]
    with xr.run("ctx", run_id="r1", attributes={"team": "search"},
                input={"q": "shoe"}) as run:
        assert run.run_id == "r1"
        with run.stage("f", type="filtering", passed="ok", reason_label="why") as st:
            assert st.stage_id is not None
            st.input(candidates, threshold=50)
            out = [{**c, "ok": c["price"] < 50, "why": None if c["price"] < 50 else "price"}
                   for c in candidates]
            st.output(out)
        run.set_output({"kept": 2})

    db = captured()
    runs = db.sql("select * from runs").to_dicts()
    assert len(runs) == 1
    r = runs[0]
    assert (r["run_id"], r["label"], r["status"], r["n_stages"]) == ("r1", "ctx", "success", 1)
    assert json.loads(r["attributes"]) == {"team": "search"}
    assert json.loads(r["input_json"]) == {"q": "shoe"}
    assert json.loads(r["output_json"]) == {"kept": 2}
    stage = db.sql("select * from stages").to_dicts()[0]
    assert (stage["name"], stage["type"], stage["seq"], stage["n_in"], stage["n_out"]) == (
        "f", "filtering", 1, 3, 2)
    assert json.loads(stage["input_json"]) == {"threshold": 50}
    assert dict(stage["reason_counts"]) == {"price": 1}
    rows = db.sql("select candidate_id, out_position, passed from candidates "
                  "order by in_position").to_dicts()
    assert rows == [{"candidate_id": "0", "out_position": 0, "passed": True},
                    {"candidate_id": "1", "out_position": None, "passed": False},
                    {"candidate_id": "2", "out_position": 1, "passed": True}]


def test_stage_block_without_pass_flags_records_survivors_only(captured: Recorded) -> None:
    with xr.run("ctx", run_id="r1") as run, run.stage("f", type="filtering") as st:
        items = [{"id": "a"}, {"id": "b"}]
        st.input(items)
        st.output(items[1:])

    rows = captured().sql("select candidate_id, passed from candidates order by 1").to_dicts()
    assert rows == [{"candidate_id": "a", "passed": False}, {"candidate_id": "b", "passed": True}]


def test_scoring_and_raw_stage_blocks(captured: Recorded) -> None:
    with xr.run("ctx", run_id="r1") as run:
        with run.stage("s", type="scoring") as st:
            st.input([{"id": 1}])
            st.output([{"id": 1, "score": 0.5}])
        with run.stage("r") as raw:
            raw.input(prompt="hi")
            raw.output({"tokens": 3})

    db = captured()
    stages = db.sql("select name, type, seq, input_json, output_json from stages "
                    "order by seq").to_dicts()
    assert [(s["name"], s["type"], s["seq"]) for s in stages] == [("s", "scoring", 1),
                                                                  ("r", "raw", 2)]
    assert json.loads(stages[1]["input_json"]) == {"prompt": "hi"}
    assert json.loads(stages[1]["output_json"]) == {"tokens": 3}
    assert db.sql("select score from candidates").item() == 0.5


def test_nested_stage_blocks_record_their_parent(captured: Recorded) -> None:
    @xr.raw_stage("decorated")
    def decorated() -> int:
        return 1

    with xr.run("ctx", run_id="r1") as run:
        with run.stage("outer") as outer:
            with run.stage("inner") as inner:
                decorated()
            outer_id, inner_id = outer.stage_id, inner.stage_id
        with run.stage("sibling"):
            pass

    rows = {r["name"]: r for r in captured().sql("select * from stages").to_dicts()}
    assert rows["outer"]["parent_stage_id"] is None
    assert rows["inner"]["parent_stage_id"] == outer_id
    assert rows["decorated"]["parent_stage_id"] == inner_id
    assert rows["sibling"]["parent_stage_id"] is None
    assert [rows[n]["seq"] for n in ("outer", "inner", "decorated", "sibling")] == [1, 2, 3, 4]


def test_exception_inside_a_stage_block_is_recorded_and_propagates(captured: Recorded) -> None:
    error = LookupError("index offline")
    with pytest.raises(LookupError) as caught, xr.run("ctx", run_id="r1") as run, \
            run.stage("search", type="retrieval"):
        raise error
    assert caught.value is error

    db = captured()
    assert db.sql("select status, error_message, error_code from stages").to_dicts() == [
        {"status": "failure", "error_message": "index offline", "error_code": "LookupError"}]
    assert db.sql("select status, error_message from runs").to_dicts() == [
        {"status": "failure", "error_message": "index offline"}]


def test_exception_caught_inside_the_run_fails_only_the_stage(captured: Recorded) -> None:
    with xr.run("ctx", run_id="r1") as run:
        with pytest.raises(ValueError), run.stage("bad"):
            raise ValueError("bad input")
        with run.stage("good"):
            pass

    db = captured()
    assert db.sql("select name, status from stages order by seq").to_dicts() == [
        {"name": "bad", "status": "failure"}, {"name": "good", "status": "success"}]
    assert db.sql("select status from runs").item() == "success"


def test_async_with_records_run_and_stages(captured: Recorded) -> None:
    async def main() -> None:
        async with xr.run("actx", run_id="a1") as run, run.stage("rank", type="ranking") as st:
            items = [{"id": 1}, {"id": 2}]
            st.input(items)
            await asyncio.sleep(0)
            st.output(items[::-1])

    asyncio.run(main())

    db = captured()
    assert db.sql("select run_id, label, n_stages from runs").to_dicts() == [
        {"run_id": "a1", "label": "actx", "n_stages": 1}]
    rows = db.sql("select candidate_id, in_position, out_position from candidates "
                  "order by in_position").to_dicts()
    assert rows == [{"candidate_id": "1", "in_position": 0, "out_position": 1},
                    {"candidate_id": "2", "in_position": 1, "out_position": 0}]


def test_async_with_exception_is_recorded_and_propagates(captured: Recorded) -> None:
    async def main() -> None:
        async with xr.run("actx", run_id="a1") as run, run.stage("s"):
            raise KeyError("k")

    with pytest.raises(KeyError):
        asyncio.run(main())
    assert captured().sql("select status from runs").item() == "failure"


def test_top_level_stage_block_joins_the_current_run_or_records_its_own(captured: Recorded) -> None:
    with xr.run("ctx", run_id="r1"), xr.stage("inside", type="raw"):
        pass
    with xr.stage("alone", type="generation") as st:
        st.output([{"id": "g"}])
    assert current_run() is None

    db = captured()
    runs = db.sql("select run_id, label, n_stages from runs order by label").to_dicts()
    assert runs[0]["label"] == "alone" and runs[0]["n_stages"] == 1
    assert runs[1] == {"run_id": "r1", "label": "ctx", "n_stages": 1}
    stages = db.sql("select name, run_id from stages order by name").to_dicts()
    assert stages == [{"name": "alone", "run_id": runs[0]["run_id"]},
                      {"name": "inside", "run_id": "r1"}]


def test_run_without_an_id_gets_a_fresh_one(captured: Recorded) -> None:
    with xr.run("ctx") as first:
        pass
    with xr.run("ctx") as second:
        pass
    assert first.run_id and second.run_id and first.run_id != second.run_id
    assert captured().sql("select count(distinct run_id) from runs").item() == 2


def test_unknown_stage_type_and_non_string_label_are_rejected() -> None:
    with pytest.raises(xr.XrayLakeError, match="unknown stage type 'sorting'"):
        xr.stage("s", type="sorting")  # type: ignore[arg-type]
    with pytest.raises(xr.XrayLakeError, match="pipeline label as a string"):
        xr.run(42)  # type: ignore[arg-type]


def test_stage_block_in_a_run_is_not_the_current_run_after_the_block(captured: Recorded) -> None:
    with xr.run("ctx", run_id="r1") as run:
        assert current_run() is not None
        with run.stage("s"):
            pass
    assert current_run() is None
