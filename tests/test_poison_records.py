"""One bad string never stops recording: lone surrogates (legal JSON, legal Python, not UTF-8)
in any recorded text are stored escaped, and every other record still lands."""

from __future__ import annotations

import json
import uuid
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


class _Unprintable:
    """An object no text can stand for: str() and repr() raise."""

    def __str__(self) -> str:
        raise RuntimeError("no text")

    __repr__ = __str__


# any value a pipeline might pass where text is expected (a stage name is also formatted into
# the usage errors `run.stage()` raises, so it is at least printable)
printable = (texts | st.integers() | st.floats() | st.none() | st.booleans()
             | st.binary(max_size=8) | st.lists(st.integers(), max_size=3)
             | st.dictionaries(texts, st.integers(), max_size=2) | st.builds(object))
anything = printable | st.builds(_Unprintable)


@pytest.mark.slow
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(run_id=anything, stage=printable, cid=anything, label=anything, text=anything,
       message=anything)
def test_any_object_in_any_recorded_field_or_id_leaves_every_other_record_landing(
        tmp_path: Path, run_id: object, stage: object, cid: object, label: object,
        text: object, message: object) -> None:
    xr.configure(strict=False)  # an object the SDK refuses is an internal error, counted
    before = xr.stats()
    _record(run_id, stage, cid, label, text, message)  # type: ignore[arg-type]
    after = f"after-{uuid.uuid4().hex}"
    _record(after, "f", "a", "b", "c", "d")
    xr.flush(10)
    stats = xr.stats()
    # each record is in the lake, set aside as a dead letter, or counted as lost
    assert stats["dropped_total"] - before["dropped_total"] == (
        stats["dropped"].get("internal_error", 0) - before["dropped"].get("internal_error", 0))
    assert stats["buffered_records"] == 0
    with xr.Lake(xr.get_settings().root) as lake:
        landed = lake.sql("select s.name, count(c.candidate_id) as n from stages s join "
                          "candidates c using (run_id, stage_id) where run_id = ? "
                          "group by s.name", params=[after]).rows()
    assert ("f", 2) in landed
