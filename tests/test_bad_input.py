"""Bad input is recorded, not fatal: each case goes through the SDK, the writer and the lake.

Strict mode is on (conftest), so any internal error of the SDK fails these tests; the
table in docs/reliability.md names the test that proves each row.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import json
import logging
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xray_lake as xr
from xray_lake.config import get_settings
from xray_lake.records.encode import CYCLE_MARKER, HEAD_KEY, MAX_DEPTH_MARKER, TRUNCATED_KEY
from xray_lake.storage.layout import escape_label, label_is_shortened, unescape_label

Lake = Callable[[], xr.Lake]
Item = dict[str, Any]


def _stage(db: xr.Lake, name: str) -> dict[str, Any]:
    rows = db.sql("select * from stages where name = ?", [name]).to_dicts()
    assert len(rows) == 1, rows
    return rows[0]


def _rows(db: xr.Lake, stage: str, columns: str = "candidate_id, in_position, out_position, passed",
          order: str = "in_position nulls last, out_position") -> list[tuple[Any, ...]]:
    return [tuple(r.values()) for r in db.sql(
        f"select {columns} from candidates where stage_name = ? order by {order}", [stage]
    ).to_dicts()]


def _payloads(db: xr.Lake, stage: str) -> dict[str, Any]:
    """candidate_id -> parsed payload; orjson.loads is strict JSON (no NaN, no Infinity)."""
    return {cid: orjson.loads(p) for cid, p in _rows(db, stage, "candidate_id, payload")}


# --- 1. non-JSON values ------------------------------------------------------------------


class Gadget:
    def __init__(self) -> None:
        self.name = "g"
        self.tags = {"b", "a"}


def test_non_json_values_in_candidates_and_raw_values_are_recorded_as_valid_json(
    lake: Lake,
) -> None:
    lock = threading.Lock()
    when = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)
    with socket.socket() as conn:
        candidates: list[Item] = [
            {"id": "object", "v": Gadget()},
            {"id": "set", "v": {3, 1, 2}},
            {"id": "bytes", "v": b"\x00\xff"},
            {"id": "decimal", "v": Decimal("1.10")},
            {"id": "datetime", "v": when},
            {"id": "numpy", "v": np.arange(3), "f": np.float32(1.5), "i": np.int64(7)},
            {"id": "socket", "v": conn},
            {"id": "lock", "v": lock},
        ]
        # orjson refuses these two, so the list takes the fallback snapshot path
        refused: list[Any] = [{"id": "int-key", 1: "one"}, {"id": "huge-int", "v": 2**70}]

        @xr.retrieval_stage("native")
        def native(conn: object, guard: object) -> list[Item]:
            return candidates

        @xr.retrieval_stage("fallback")
        def fallback() -> list[Any]:
            return refused

        @xr.raw_stage("raw")
        def raw(conn: object, amount: Decimal) -> object:
            return {"lock": lock, "when": when, "matrix": np.eye(2)}

        @xr.pipeline("odd-values")
        def pipe(conn: socket.socket, amount: Decimal) -> object:
            native(conn, lock)
            fallback()
            return raw(conn, amount)

        result = pipe(conn, Decimal("9.99"))
        db = lake()  # flushed while the socket is open: raw values are encoded by the writer

    assert result["lock"] is lock
    got = _payloads(db, "native")
    assert got["object"] == {"id": "object", "v": {"name": "g", "tags": ["a", "b"]}}
    assert got["set"]["v"] == [1, 2, 3]
    assert got["bytes"]["v"] == "AP8="  # base64
    assert got["decimal"]["v"] == "1.10"  # text keeps the precision
    assert got["datetime"]["v"] == "2024-05-06T07:08:09Z"
    assert got["numpy"] == {"id": "numpy", "v": [0, 1, 2], "f": 1.5, "i": 7}
    assert got["socket"]["v"].startswith("<socket.socket")  # the repr, as a JSON string
    assert "lock" in got["lock"]["v"]
    assert _payloads(db, "fallback") == {
        "int-key": {"id": "int-key", "1": "one"},
        "huge-int": {"id": "huge-int", "v": str(2**70)},
    }
    for stage in db.sql("select * from stages").to_dicts():
        assert (stage["status"], stage["validation_error"]) == ("success", None), stage
        for column in ("input_json", "output_json"):
            if stage[column] is not None:
                orjson.loads(stage[column])
    raw_row = _stage(db, "raw")
    assert orjson.loads(raw_row["input_json"])["amount"] == "9.99"
    output = orjson.loads(raw_row["output_json"])
    assert output["when"] == "2024-05-06T07:08:09Z" and output["matrix"] == [[1, 0], [0, 1]]
    run = db.sql("select status, input_json, output_json from runs").to_dicts()[0]
    assert run["status"] == "success"
    assert orjson.loads(run["input_json"])["conn"].startswith("<socket.socket")
    assert orjson.loads(run["output_json"]) == output


# --- 2. NaN and infinite scores ----------------------------------------------------------

SCORES: list[object] = [1.0, float("nan"), float("inf"), float("-inf"), 3.0, None,
                        np.float64("nan")]


def test_nan_and_infinite_scores_are_skipped_by_metrics_and_stored_as_null(lake: Lake) -> None:
    for mode in ("freeze", "reference"):  # the score column is the same in both modes
        xr.configure(snapshot=mode)

        @xr.scoring_stage(f"mapped-{mode}")
        def mapped(items: list[Item]) -> list[Item]:
            return [{**c, "score": s} for c, s in zip(items, SCORES, strict=True)]

        @xr.scoring_stage(f"helper-{mode}")
        def helper(items: list[Item]) -> list[xr.Scored[Item]]:
            return [xr.Scored(c, s) for c, s in zip(items, SCORES, strict=True)]

        items = [{"id": i} for i in range(len(SCORES))]
        mapped(items)
        helper(items)

    db = lake()
    for name in ("mapped-freeze", "helper-freeze", "mapped-reference", "helper-reference"):
        assert [r[0] for r in _rows(db, name, "score", "out_position")] == [
            1.0, None, None, None, 3.0, None, None], name
        stage = _stage(db, name)
        assert (stage["n_in"], stage["n_out"], stage["n_score_null"]) == (7, 7, 5), name
        assert (stage["score_min"], stage["score_max"], stage["score_mean"]) == (1.0, 3.0, 2.0)
        assert (stage["score_std"], stage["score_p50"]) == (1.0, 2.0)
        assert stage["validation_error"] is None
    # JSON has no NaN: the payload says null where the score was NaN or infinite
    assert _payloads(db, "mapped-freeze")["1"] == {"id": 1, "score": None}


# --- 3. missing and duplicate ids --------------------------------------------------------


def test_missing_duplicate_and_unhashable_candidate_ids_are_recorded_row_by_row(
    lake: Lake,
) -> None:
    @xr.retrieval_stage("search")
    def search() -> list[Item]:
        return [{"id": "a"}, {"name": "no id"}, {"id": None}]

    @xr.filtering_stage("in-stock", passed="ok")  # no candidate has an id
    def in_stock(items: list[Item]) -> list[Item]:
        for c in items:
            c["ok"] = c["qty"] > 0
        return items

    @xr.filtering_stage("dedupe")  # survivors are copies: matched by id, one to one
    def dedupe(items: list[Item]) -> list[Item]:
        return [dict(items[0]), dict(items[1])]

    @xr.ranking_stage("reverse")
    def reverse(items: list[Item]) -> list[Item]:
        return items[::-1]

    @xr.scoring_stage("top1")  # ids that are lists or dicts cannot be hashed
    def top1(items: list[Item]) -> list[Item]:
        return [{**items[0], "score": 1.0}]

    search()
    in_stock([{"qty": 1}, {"qty": 0}, {"qty": 5}])
    dedupe([{"id": "a", "n": 0}, {"id": "b"}, {"id": "a", "n": 2}])
    reverse([{"id": "a", "n": 0}, {"id": "a", "n": 1}, {"id": "b"}])
    top1([{"id": ["a"]}, {"id": {"x": 1}}, {"id": "b"}])

    db = lake()
    assert _rows(db, "search", order="out_position") == [
        ("a", None, 0, None), (None, None, 1, None), (None, None, 2, None)]
    assert _stage(db, "search")["validation_error"] == "2 of 3 candidates have no id under 'id'"

    assert _rows(db, "in-stock") == [(None, 0, 0, True), (None, 1, None, False),
                                     (None, 2, 1, True)]  # matched by identity, not twice
    stage = _stage(db, "in-stock")
    assert (stage["n_in"], stage["n_out"], stage["n_passed"], stage["n_failed"]) == (3, 2, 2, 1)
    assert stage["validation_error"] == "3 of 3 candidates have no id under 'id'"

    assert _rows(db, "dedupe") == [("a", 0, 0, True), ("b", 1, 1, True), ("a", 2, None, False)]
    stage = _stage(db, "dedupe")
    assert (stage["n_in"], stage["n_out"], stage["n_failed"]) == (3, 2, 1)

    # the k-th returned copy of an id is matched to its k-th input copy
    assert _rows(db, "reverse") == [("a", 0, 1, None), ("a", 1, 2, None), ("b", 2, 0, None)]
    assert (_stage(db, "reverse")["n_in"], _stage(db, "reverse")["n_out"]) == (3, 3)

    assert _rows(db, "top1") == [("['a']", 0, 0, None), ("{'x': 1}", 1, None, None),
                                 ("b", 2, None, None)]


# --- 4. outputs of the wrong shape -------------------------------------------------------


def test_filtering_stage_returning_a_non_list_is_recorded_warned_once_and_returned_untouched(
    lake: Lake, caplog: pytest.LogCaptureFixture
) -> None:
    items = [{"id": "a"}, {"id": "b"}]
    lazy = (c for c in items)
    outputs: list[object] = [{"kept": "a"}, None, lazy, "a,b"]
    pending = list(outputs)

    @xr.filtering_stage("wrong-shape")
    def wrong_shape(candidates: list[Item]) -> Any:
        return pending.pop(0)

    @xr.filtering_stage("also-wrong")
    def also_wrong(candidates: list[Item]) -> Any:
        return {"n": len(candidates)}

    with caplog.at_level(logging.WARNING, logger="xray_lake"):
        returned = [wrong_shape(items) for _ in outputs]
        also_wrong(items)
        also_wrong(items)

    assert all(got is sent for got, sent in zip(returned, outputs, strict=True))
    assert list(lazy) == items  # the generator was not consumed
    messages = [r.getMessage() for r in caplog.records if "expected a list" in r.getMessage()]
    assert len([m for m in messages if "'wrong-shape'" in m]) == 1
    assert len([m for m in messages if "'also-wrong'" in m]) == 1

    db = lake()
    rows = db.sql("select status, validation_error, output_json, n_in, n_out, "
                  "n_candidates_stored from stages where name = 'wrong-shape' "
                  "order by seq, started_at").to_dicts()
    assert [r["validation_error"].split(" returned ")[1].split(",")[0] for r in rows] == [
        "dict", "NoneType", "generator", "str"]
    assert all("expected a list" in r["validation_error"] for r in rows)
    assert [r["output_json"] and json.loads(r["output_json"]) for r in rows][:2] == [
        {"kept": "a"}, None]
    assert json.loads(rows[2]["output_json"]).startswith("<generator object")
    assert json.loads(rows[3]["output_json"]) == "a,b"
    for row in rows:
        assert (row["status"], row["n_in"], row["n_out"], row["n_candidates_stored"]) == (
            "success", 2, None, 2)
    # the inputs are recorded without a verdict
    assert _rows(db, "wrong-shape", "passed, out_position") == [(None, None)] * 8


# --- 5. huge values ----------------------------------------------------------------------


@pytest.mark.slow
def test_huge_candidate_is_capped_and_a_huge_list_lands_every_row_with_exact_metrics(
    lake: Lake,
) -> None:
    big = {"id": "big", "blob": "x" * 10_000_000}

    @xr.retrieval_stage("huge")
    def huge() -> list[Item]:
        return [big, {"id": "small"}]

    n = 100_000

    @xr.filtering_stage("bulk", passed="ok", reason_label="why")
    def bulk(items: list[Item]) -> list[Item]:
        for c in items:
            c["ok"] = c["id"] % 4 != 0
            c["why"] = None if c["ok"] else f"r{c['id'] % 3}"
        return items

    huge()
    many = [{"id": i} for i in range(n)]
    bulk(many)
    expected_reasons = Counter(c["why"] for c in many if not c["ok"])

    db = lake()
    payloads = _payloads(db, "huge")
    cap = get_settings().payload_cap_bytes
    assert payloads["small"] == {"id": "small"}
    assert set(payloads["big"]) == {TRUNCATED_KEY, HEAD_KEY}
    assert payloads["big"][TRUNCATED_KEY] == len(orjson.dumps(big))
    assert payloads["big"][HEAD_KEY].startswith('{"id":"big","blob":"xxx')
    assert len(payloads["big"][HEAD_KEY].encode()) <= cap
    stage = _stage(db, "huge")
    assert (stage["n_truncated"], stage["n_candidates_stored"]) == (1, 2)

    stage = _stage(db, "bulk")
    assert (stage["n_in"], stage["n_out"], stage["n_passed"], stage["n_failed"]) == (
        n, 3 * n // 4, 3 * n // 4, n // 4)
    assert stage["fail_ratio"] == 0.25
    assert dict(stage["reason_counts"]) == dict(expected_reasons)
    assert stage["n_candidates_stored"] == n
    counts = db.sql(
        "select count(*) n, count(distinct candidate_id) ids, count(out_position) out, "
        "max(out_position) last from candidates where stage_name = 'bulk'").to_dicts()[0]
    assert counts == {"n": n, "ids": n, "out": 3 * n // 4, "last": 3 * n // 4 - 1}


# --- 6. deep nesting and self-references -------------------------------------------------


def _depth_to_marker(value: Any, key: str | None) -> tuple[int, Any]:
    depth = 0
    while isinstance(value, dict | list):
        value = value[key] if isinstance(value, dict) else value[0]
        depth += 1
    return depth, value


def test_deeply_nested_and_self_referencing_payloads_are_recorded_with_markers(
    lake: Lake,
) -> None:
    deep: Any = "bottom"
    deep_list: Any = []
    for _ in range(10_000):
        deep = {"down": deep}
        deep_list = [deep_list]
    me: Item = {"id": "me"}
    me["self"] = me
    loop: list[Any] = ["x"]
    loop.append(loop)
    tangled_items = [{"id": "deep", "v": deep}, {"id": "deep-list", "v": deep_list}, me,
                     {"id": "loop", "v": loop}]

    @xr.retrieval_stage("tangled")
    def tangled(a: object, b: object) -> list[Item]:
        return tangled_items

    @xr.filtering_stage("keep-me")
    def keep_me(items: list[Item]) -> list[Item]:
        return [me]

    with xr.run("tangled", run_id="t1", input=deep) as run:
        keep_me(tangled(deep, loop))
        run.set_output(loop)

    db = lake()
    for stage in ("tangled", "keep-me"):
        got = _payloads(db, stage)
        depth, leaf = _depth_to_marker(got["deep"]["v"], "down")
        assert leaf == MAX_DEPTH_MARKER and depth < 100
        depth, leaf = _depth_to_marker(got["deep-list"]["v"], None)
        assert leaf == MAX_DEPTH_MARKER and depth < 100
        assert got["me"]["id"] == "me" and CYCLE_MARKER in json.dumps(got["me"])
        assert got["loop"]["v"] == ["x", CYCLE_MARKER]
    assert _rows(db, "keep-me", "candidate_id, passed") == [
        ("deep", False), ("deep-list", False), ("me", True), ("loop", False)]
    tangled_row = _stage(db, "tangled")
    assert MAX_DEPTH_MARKER in tangled_row["input_json"]
    assert orjson.loads(tangled_row["input_json"])["b"] == ["x", CYCLE_MARKER]
    run_row = db.sql("select status, input_json, output_json from runs").to_dicts()[0]
    assert run_row["status"] == "success"
    assert MAX_DEPTH_MARKER in run_row["input_json"]
    assert orjson.loads(run_row["output_json"]) == ["x", CYCLE_MARKER]
    assert xr.stats()["internal_errors"] == {}


# --- 7. hostile labels and stage names ---------------------------------------------------

HOSTILE = ["a/b", "..", ".", "../../etc", "nul\x00byte", "new\nline", "ünï☃ 😀", "k" * 1024]


def test_hostile_labels_and_stage_names_round_trip_through_the_lake(
    lake: Lake, isolated_lake: str
) -> None:
    for i, name in enumerate(HOSTILE):
        with xr.run(name, run_id=f"hostile-{i}") as run, \
                run.stage(name, type="retrieval") as stage:
            stage.output([{"id": name}])

    db = lake()
    got = db.sql(
        "select r.run_id, r.label, s.label stage_label, s.name, c.label candidate_label, "
        "c.stage_name, c.candidate_id from runs r join stages s using (run_id) "
        "join candidates c using (run_id, stage_id)").to_dicts()
    by_run = {row["run_id"]: row for row in got}
    assert len(by_run) == len(got) == len(HOSTILE)
    for i, name in enumerate(HOSTILE):
        row = by_run[f"hostile-{i}"]
        # stage names and ids are data columns: always exact
        assert (row["name"], row["stage_name"], row["candidate_id"]) == (name, name, name)
        # labels are folder names: exact, except past 200 escaped bytes (prefix + '~' + hash)
        label = unescape_label(escape_label(name)) if label_is_shortened(name) else name
        assert row["label"] == row["stage_label"] == row["candidate_label"] == label
    long_label = by_run[f"hostile-{len(HOSTILE) - 1}"]["label"]
    assert long_label != HOSTILE[-1] and long_label.startswith("k" * 200)
    assert long_label[200] == "~" and len(long_label) == 233
    root = Path(isolated_lake).resolve()
    for table in ("runs", "stages", "candidates"):
        folders = list((root / table).iterdir())
        assert len(folders) == len(HOSTILE)
        assert all(f.resolve().parent == root / table for f in folders)


# --- 8. a reused run id ------------------------------------------------------------------


def test_reused_run_id_records_two_runs_each_with_its_own_stages(lake: Lake) -> None:
    @xr.retrieval_stage("search")
    def search(query: str) -> list[Item]:
        return [{"id": query}]

    @xr.filtering_stage("filter")
    def filter_(items: list[Item]) -> list[Item]:
        return items

    @xr.pipeline("checkout", id="request_id")
    def checkout(request_id: str, query: str, deep: bool) -> int:
        found = search(query)
        return len(filter_(found) if deep else found)

    checkout("req-1", "first", True)
    checkout("req-1", "second", False)

    db = lake()
    runs = db.sql("select run_id, n_stages, status from runs order by started_at").to_dicts()
    assert runs == [{"run_id": "req-1", "n_stages": 2, "status": "success"},
                    {"run_id": "req-1", "n_stages": 1, "status": "success"}]
    # stages carry the run id only: each belongs to the last run of that id started before it
    attached = db.sql(
        "select json_extract_string(r.input_json, '$.query') query, s.name, s.seq, "
        "c.candidate_id from stages s asof join runs r on s.run_id = r.run_id "
        "and s.started_at >= r.started_at "
        "join candidates c on c.stage_id = s.stage_id order by r.started_at, s.seq").to_dicts()
    assert [tuple(r.values()) for r in attached] == [
        ("first", "search", 1, "first"), ("first", "filter", 2, "first"),
        ("second", "search", 1, "second")]


# --- 9. interruptions --------------------------------------------------------------------


def test_interrupted_stages_are_recorded_and_the_interruption_propagates(lake: Lake) -> None:
    items = [{"id": "a"}, {"id": "b"}]
    interrupt = KeyboardInterrupt()

    @xr.filtering_stage("ctrl-c")
    def ctrl_c(candidates: list[Item]) -> list[Item]:
        raise interrupt

    with pytest.raises(KeyboardInterrupt) as caught, xr.run("interrupts", run_id="ki"):
        ctrl_c(items)
    assert caught.value is interrupt

    body_saw: list[str] = []

    @xr.retrieval_stage("stream")
    def stream() -> Iterator[Item]:
        try:
            yield from items
        except GeneratorExit:
            body_saw.append("GeneratorExit")
            raise

    with xr.run("interrupts", run_id="ge"):
        gen = stream()
        assert next(gen) is items[0]
        gen.close()  # a wrapper that swallowed GeneratorExit and yielded would raise here
    assert body_saw == ["GeneratorExit"]
    with pytest.raises(StopIteration):
        next(gen)

    started = asyncio.Event()

    @xr.scoring_stage("slow-model")
    async def slow_model(candidates: list[Item]) -> list[Item]:
        started.set()
        await asyncio.sleep(3600)
        return candidates

    async def main() -> None:
        async with xr.run("interrupts", run_id="ce"):
            task = asyncio.ensure_future(slow_model(items))
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())

    db = lake()
    stages = {r["run_id"]: r for r in db.sql(
        "select run_id, name, status, error_code, n_in, n_out, n_candidates_stored "
        "from stages").to_dicts()}
    assert stages["ki"] == {"run_id": "ki", "name": "ctrl-c", "status": "failure",
                            "error_code": "KeyboardInterrupt", "n_in": 2, "n_out": None,
                            "n_candidates_stored": 2}
    assert stages["ge"] == {"run_id": "ge", "name": "stream", "status": "success",
                            "error_code": None, "n_in": None, "n_out": 1,
                            "n_candidates_stored": 1}
    assert stages["ce"] == {"run_id": "ce", "name": "slow-model", "status": "failure",
                            "error_code": "CancelledError", "n_in": 2, "n_out": 0,
                            "n_candidates_stored": 2}
    assert _rows(db, "ctrl-c") == [("a", 0, None, None), ("b", 1, None, None)]
    runs = dict(db.sql("select run_id, status from runs").iter_rows())
    assert runs == {"ki": "failure", "ge": "success", "ce": "success"}


# --- 10. any JSON-like candidate list round-trips ------------------------------------------

_JSON_LEAVES = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8))
_JSON = st.recursive(
    _JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8,
)
_KEYS = st.text(max_size=5).filter(lambda key: key != "id")


@st.composite
def _candidates_and_verdicts(draw: st.DrawFn) -> tuple[list[Item], list[bool]]:
    ids = draw(st.lists(st.text(max_size=6), max_size=6, unique=True))
    candidates = [{"id": i, **draw(st.dictionaries(_KEYS, _JSON, max_size=3))} for i in ids]
    keep = draw(st.lists(st.booleans(), min_size=len(ids), max_size=len(ids)))
    return candidates, keep


@xr.retrieval_stage("retrieve")
def _retrieve(candidates: list[Item]) -> list[Item]:
    return candidates


@xr.filtering_stage("keep-some")
def _keep_some(items: Annotated[list[Item], xr.Candidates()], keep: list[bool]) -> list[Item]:
    return [c for c, k in zip(items, keep, strict=True) if k]


_run_numbers = itertools.count()


@pytest.fixture
def reopened_lake(isolated_lake: str) -> Iterator[Lake]:
    """Like `lake`, but one DuckDB connection for every example of a property test (its views
    read the files published since): opening a lake costs more than the rest of an example."""
    opened: list[xr.Lake] = []

    def open_lake() -> xr.Lake:
        assert xr.flush(5), f"flush failed: {xr.stats()}"
        if not opened:
            opened.append(xr.Lake(isolated_lake))
        return opened[0]

    yield open_lake
    for db in opened:
        db.close()


@pytest.mark.slow
@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_candidates_and_verdicts())
def test_any_json_like_candidate_list_lands_with_payloads_equal_to_the_input(
    case: tuple[list[Item], list[bool]], reopened_lake: Lake
) -> None:
    candidates, keep = case
    run_id = f"prop-{next(_run_numbers)}"
    with xr.run("property", run_id=run_id):
        _keep_some(_retrieve(candidates), keep)

    db = reopened_lake()
    rows = db.sql(
        "select stage_name, candidate_id, in_position, out_position, passed, payload "
        "from candidates where run_id = ? order by stage_name, in_position, out_position",
        [run_id]).to_dicts()
    retrieved = [r for r in rows if r["stage_name"] == "retrieve"]
    assert [orjson.loads(r["payload"]) for r in retrieved] == candidates
    assert [r["candidate_id"] for r in retrieved] == [c["id"] for c in candidates]
    filtered = [r for r in rows if r["stage_name"] == "keep-some"]
    assert [orjson.loads(r["payload"]) for r in filtered] == candidates
    assert [r["passed"] for r in filtered] == keep
    ranks = list(itertools.accumulate(keep))
    assert [r["out_position"] for r in filtered] == [
        ranks[i] - 1 if k else None for i, k in enumerate(keep)]


def test_a_label_too_long_for_a_folder_is_kept_whole_in_the_run_attributes(
    lake: Any, caplog: pytest.LogCaptureFixture
) -> None:
    label = "pipeline-" + "x" * 1000
    with xr.run(label, run_id="long"):
        pass
    with xr.run(label, run_id="long-2"):
        pass
    rows = lake().sql("select label, attributes from runs order by run_id").to_dicts()
    assert all(len(r["label"].encode()) < 255 for r in rows)
    assert [orjson.loads(r["attributes"])["xray.label"] for r in rows] == [label, label]
    assert sum("too long for a folder name" in r.message for r in caplog.records) == 1


def test_truncated_values_are_warned_about_once_per_stage_name(
    lake: Any, caplog: pytest.LogCaptureFixture
) -> None:
    xr.configure(payload_cap_bytes=64)

    @xr.retrieval_stage("wide")
    def wide() -> list[dict[str, Any]]:
        return [{"id": i, "text": "y" * 500} for i in range(3)]

    wide()
    wide()
    assert xr.flush(10)
    assert lake().sql("select sum(n_truncated) as n from stages")["n"][0] == 6
    assert sum("longer than the size caps" in r.message for r in caplog.records) == 1
