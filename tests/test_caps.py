"""Size caps: what is cut is marked, counted over every candidate (sampled or not), warned once."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Annotated, Any

import pytest

import xray_lake as xr
from tests._captured import Captured, Tables

Recorded = Callable[[], Captured]
Item = dict[str, Any]


def _stage_row(db: Tables, name: str) -> Item:
    rows = db.sql("select * from stages where name = ?", [name]).to_dicts()
    assert len(rows) == 1
    return rows[0]


def _warnings(caplog: pytest.LogCaptureFixture, stage: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and f"stage {stage!r}" in r.getMessage()]


def _long(n: int, *, ok: bool = False) -> list[Item]:
    return [{"id": f"c{i}", "ok": ok, "why": "w" * 80, "blob": "b" * 300} for i in range(n)]


def _judge(name: str, items: list[Item], **options: Any) -> None:
    """One run with one filtering stage (pass flag `ok`, reason text `why`) over `items`."""
    with xr.run("p") as run, run.stage(name, type="filtering", passed="ok", reason_text="why",
                                       **options) as st:
        st.input(items, note="n" * 200)
        st.output(items)


def test_cut_values_are_marked_and_keep_their_head(captured: Recorded) -> None:
    _judge("judge", _long(2), caps=xr.Caps(payload_bytes=100, reason_chars=20, raw_bytes=64))
    db = captured()
    row = _stage_row(db, "judge")
    assert row["n_truncated"] == 5  # 2 payloads, 2 reason texts, the raw input
    raw = json.loads(row["input_json"])
    assert raw["$truncated"] > 200 and raw["$head"].startswith('{"note":"nnn')
    for r in db.sql("select payload, reason_text from candidates").to_dicts():
        payload = json.loads(r["payload"])
        assert payload["$truncated"] > 300 and payload["$head"].startswith('{"id":"c')
        assert r["reason_text"] == "w" * 20 + "…[+60 chars]"


def test_global_caps_apply_when_a_stage_sets_none(captured: Recorded) -> None:
    xr.configure(payload_cap_bytes=128, reason_cap_chars=16)
    _judge("global", _long(3), caps=xr.Caps(raw_bytes=4096))  # raw only: the rest is global
    assert _stage_row(captured(), "global")["n_truncated"] == 6


def test_n_truncated_counts_every_candidate_before_sampling(captured: Recorded) -> None:
    items = [*_long(2, ok=True), *[{**x, "id": f"f{i}"} for i, x in enumerate(_long(30))]]
    _judge("sampled", items, sample=xr.Sample(max_failed=3),
           caps=xr.Caps(payload_bytes=100, reason_chars=20, raw_bytes=4096))
    row = _stage_row(captured(), "sampled")
    assert row["sampled"] and row["n_candidates_stored"] == 5
    assert row["n_truncated"] == 64  # 32 payloads + 32 reason texts, stored or not


def test_dropped_inputs_of_a_sampled_ranking_stage_are_counted(captured: Recorded) -> None:
    @xr.ranking_stage("top", sample=xr.Sample(top=100, max_rest=2),
                      caps=xr.Caps(payload_bytes=100))
    def top(products: Annotated[list[Item], xr.Candidates()]) -> list[Item]:
        return products[:150]  # the other 50 inputs are dropped (not returned)

    with xr.run("p"):
        top(_long(200))
    row = _stage_row(captured(), "top")
    assert row["n_candidates_stored"] == 102  # the first 100 + 2 others
    assert row["n_truncated"] == 200


def test_result_helpers_and_failed_stages_count_each_cut_once(captured: Recorded) -> None:
    @xr.filtering_stage("helpers", caps=xr.Caps(payload_bytes=100, reason_chars=10),
                        sample=xr.Sample(max_failed=1))
    def helpers(products: Annotated[list[Item], xr.Candidates()]) -> list[xr.Filtered[Item]]:
        return [xr.Filtered(p, False, "long", "t" * 50) for p in products]

    @xr.scoring_stage("boom", caps=xr.Caps(payload_bytes=100))
    def boom(products: Annotated[list[Item], xr.Candidates()]) -> list[Item]:
        raise RuntimeError("scorer down")

    with xr.run("p"):
        helpers(_long(4))
        with pytest.raises(RuntimeError):
            boom(_long(3))
    db = captured()
    assert _stage_row(db, "helpers")["n_truncated"] == 8  # 4 payloads + 4 texts, 1 row stored
    failed = _stage_row(db, "boom")
    assert failed["status"] == "failure" and failed["n_truncated"] == 3  # not 6


def test_a_truncation_warning_names_stage_field_cap_and_fix_once_per_stage(
        lake: Callable[[], xr.Lake], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="xray_lake")
    for _ in range(3):
        _judge("judge", _long(2), caps=xr.Caps(payload_bytes=100, reason_chars=20,
                                               raw_bytes=4096))
        with xr.run("p") as run, run.stage("other", type="retrieval") as st:
            st.output([{"id": "x", "blob": "b" * 20_000}])
    lake()
    judge, other = _warnings(caplog, "judge"), _warnings(caplog, "other")
    assert len(judge) == 1 and len(other) == 1
    assert "2 payload value(s) over 100 bytes" in judge[0]
    assert "2 reason_text value(s) over 20 chars" in judge[0]
    assert "caps=xr.Caps(payload_bytes=..., reason_chars=...)" in judge[0]
    assert "xr.configure(payload_cap_bytes=..., reason_cap_chars=...)" in judge[0]
    assert "over 16384 bytes" in other[0] and "payload_cap_bytes" in other[0]


def test_unfit_promoted_values_are_warned_with_their_field(
        captured: Recorded, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="xray_lake")
    with xr.run("p") as run, run.stage("prices", type="retrieval",
                                       fields={"price": xr.Field("price", float)}) as st:
        st.output([{"id": "a", "price": "n/a"}, {"id": "b", "price": 3}])
    assert _stage_row(captured(), "prices")["n_truncated"] == 1
    [warning] = _warnings(caplog, "prices")
    assert "promoted field f_price do not fit float64" in warning
    assert "stored null" in warning


@pytest.mark.slow
def test_a_candidate_larger_than_the_buffer_bound_is_truncated_not_dropped(captured: Recorded) -> None:
    # 100 MB of JSON is more than the records' share of the default bound (128 MiB, counting
    # the blob twice): the record waits until nothing else is held, then gets in alone
    with xr.run("big", run_id="r1") as run, run.stage("s", type="retrieval") as st:
        st.output([{"id": "huge", "blob": "x" * 100_000_000}, {"id": "small"}])
    rows = captured().sql("select candidate_id, payload from candidates order by 1").to_dicts()
    assert [r["candidate_id"] for r in rows] == ["huge", "small"]
    assert json.loads(rows[0]["payload"])["$truncated"] > 100_000_000
    assert xr.stats()["dropped_total"] == 0
