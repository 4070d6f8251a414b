"""One bad string never stops recording: lone surrogates (legal JSON, legal Python, not UTF-8)
in any recorded text are stored escaped, and every other record still lands."""

from __future__ import annotations

import json
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

import xray_lake as xr

LONE = json.loads('"sku-\\ud800"')
# any text, lone surrogates included (category Cs)
texts = st.text(st.characters(codec=None, categories=None), max_size=12) | st.just(LONE)


def _record(run_id: str, stage: str, cid: str, label: str, text: str, message: str) -> None:
    with xr.run("poison", run_id=run_id) as run:
        with run.stage(stage, type="filtering", passed="ok", reason_label="why",
                       reason_text="text") as s:
            items = [{"id": cid, "ok": False, "why": label, "text": text},
                     {"id": "fine", "ok": True, "why": None, "text": None}]
            s.input(items)
            s.output(items)
        try:
            with run.stage("raises", type="raw"):
                raise OSError(message)
        except OSError:
            pass


def test_a_lone_surrogate_in_an_id_is_stored_escaped_and_later_runs_land(
        isolated_lake: str) -> None:
    _record("r-" + LONE, "f-" + LONE, LONE, LONE, LONE, LONE)
    _record("good", "f", "a", "b", "c", "d")
    assert xr.flush(10)
    lake = xr.Lake(isolated_lake)
    assert sorted(lake.sql("select run_id from runs")["run_id"]) == ["good", "r-sku-\\ud800"]
    ids = set(lake.sql("select candidate_id from candidates")["candidate_id"])
    assert ids == {"sku-\\ud800", "fine", "a"}
    assert xr.stats()["dropped_total"] == 0


@pytest.mark.slow
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(run_id=texts, stage=texts, cid=texts, label=texts, text=texts, message=texts)
def test_any_text_in_any_recorded_field_leaves_every_other_record_landing(
        tmp_path: Path, run_id: str, stage: str, cid: str, label: str, text: str,
        message: str) -> None:
    before = xr.stats()["runs_recorded"]
    _record("x" + run_id, stage, cid, label, text, message)
    _record("after", "f", "a", "b", "c", "d")
    assert xr.flush(10), xr.stats()
    stats = xr.stats()
    assert stats["runs_recorded"] - before == 2
    assert stats["dropped_total"] == 0
    lake = xr.Lake(xr.get_settings().root)
    assert lake.sql("select count(*) as n from runs where run_id = 'after'")["n"][0] >= 1


def test_a_label_with_a_lone_surrogate_is_stored_escaped(isolated_lake: str) -> None:
    with xr.run("label-" + LONE, run_id="r1") as run, run.stage("s", type="retrieval") as st:
        st.output([{"id": "a"}])
    with xr.run("fine", run_id="r2") as run, run.stage("s", type="retrieval") as st:
        st.output([{"id": "b"}])
    assert xr.flush(10)
    labels = set(xr.Lake(isolated_lake).sql("select label from runs")["label"])
    assert labels == {"label-sku-\\ud800", "fine"}
