"""Poison records: what Arrow refuses is repaired, and what cannot be repaired is set aside in a
dead-letter folder beside the spool (counted, listed by doctor); every other record lands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

import xray_lake as xr
from tests._faults import unwritable
from xray_lake.storage import doctor


class Unprintable:
    """A value no text can stand for: str() and repr() raise."""

    def __str__(self) -> str:
        raise RuntimeError("no text for this value")

    __repr__ = __str__


def good_run(run_id: str) -> None:
    with xr.run("shop", run_id=run_id) as run, run.stage("fetch", type="retrieval") as st:
        st.output([{"id": "a"}, {"id": "b"}])


def poison_run(run_id: Any = "poison") -> None:
    """A run whose filtering stage has a candidate id that cannot become text."""
    with xr.run("shop", run_id=run_id) as run:
        with run.stage("fetch", type="retrieval") as st:
            st.output([{"id": "ok"}])
        with run.stage("filter", type="filtering", passed="ok") as st:
            items = [{"id": Unprintable(), "ok": True}, {"id": "b", "ok": False}]
            st.input(items)
            st.output(items)


def letters(spool: Path) -> list[dict[str, Any]]:
    found = sorted(spool.rglob("_dead_letter/*.json"))
    return [{"path": str(p), **json.loads(p.read_text())} for p in found]


def runs_and_stages(root: str) -> dict[str, tuple[str, list[str]]]:
    lake = xr.Lake(root)
    status = dict(lake.sql("select run_id, status from runs").rows())
    stages = lake.sql("select run_id, list(name order by name) as names from stages "
                      "group by run_id").rows()
    return {run_id: (status.get(run_id, "-"), names) for run_id, names in stages}


def test_a_record_that_cannot_be_encoded_is_dead_lettered_and_every_other_record_lands(
        isolated_lake: str, tmp_path: Path) -> None:
    good_run("before")
    poison_run()
    good_run("after")
    assert not xr.flush(10)  # the stage is in neither the lake nor the spool
    stats = xr.stats()
    assert stats["dead_lettered"] == 3  # the stage record and its two candidates
    assert stats["dropped_total"] == 0
    assert runs_and_stages(isolated_lake) == {
        "before": ("success", ["fetch"]),
        "poison": ("incomplete", ["fetch"]),
        "after": ("success", ["fetch"]),
    }
    [letter] = letters(tmp_path / "spool")
    assert letter["format"] == "xray-lake dead letter 1"
    assert (letter["label"], letter["run_id"], letter["stage"], letter["stage_type"]) == (
        "shop", "poison", "filter", "filtering")
    assert "no text for this value" in letter["error"]
    record = json.dumps(letter["record"])
    assert "whose repr raised RuntimeError" in record and '"ok"' in record
    assert xr.flush(10)  # what was set aside was reported once


def test_doctor_lists_dead_letters_and_never_deletes_them(isolated_lake: str,
                                                         tmp_path: Path) -> None:
    from xray_lake.cli.app import app

    poison_run()
    xr.flush(10)
    [letter] = letters(tmp_path / "spool")
    for fix in (False, True):
        report = doctor.scan(isolated_lake, fix=fix)
        assert [(p.kind, p.path, p.fixed) for p in report.problems] == [
            (doctor.DEAD_LETTER, letter["path"], False)]
        assert "no text for this value" in report.problems[0].detail
        assert "'poison'" in report.problems[0].detail
    result = CliRunner().invoke(app, ["doctor", "--root", isolated_lake])
    assert result.exit_code == 1
    assert "dead_letter" in result.stdout and "1 dead letter:" in result.stdout
    assert Path(letter["path"]).exists()
    Path(letter["path"]).unlink()
    assert doctor.scan(isolated_lake).ok


def test_a_run_id_that_cannot_be_text_sets_aside_its_rows_and_the_writer_goes_on(
        isolated_lake: str, tmp_path: Path) -> None:
    good_run("before")
    unprintable: Any = Unprintable()
    with xr.run("shop", run_id=unprintable) as run, run.stage("fetch", type="retrieval") as st:
        st.output([{"id": "a"}])
    good_run("after")
    assert not xr.flush(10)
    assert xr.stats()["dropped_total"] == 0
    assert xr.stats()["dead_lettered"] == 3  # its run row, its stage row, its candidate row
    assert set(runs_and_stages(isolated_lake)) == {"before", "after"}
    assert sorted(letter["table"] for letter in letters(tmp_path / "spool")) == [
        "candidates", "runs", "stages"]
    good_run("later")
    assert xr.flush(10)
    assert set(runs_and_stages(isolated_lake)) == {"before", "after", "later"}


def test_values_arrow_refuses_are_repaired_and_the_writer_never_stalls(
        isolated_lake: str, tmp_path: Path) -> None:
    number: Any = 123
    with xr.run("shop", run_id=number) as run, run.stage(number * 2, type="retrieval") as st:
        st.output([{"id": "a"}])
    for run_id, price in (("big", 2**53 + 1), ("float", 1.5)):  # int64 and float64: one file
        with xr.run("shop", run_id=run_id) as run, \
                run.stage("priced", type="retrieval", fields={"price": "price"}) as st:
            st.output([{"id": "a", "price": price}])
    good_run("after")
    assert xr.flush(10), xr.stats()
    assert xr.stats()["dead_lettered"] == 0
    lake = xr.Lake(isolated_lake)
    assert runs_and_stages(isolated_lake) == {
        "123": ("success", ["246"]), "big": ("success", ["priced"]),
        "float": ("success", ["priced"]), "after": ("success", ["fetch"])}
    prices = dict(lake.sql("select run_id, f_price from candidates where run_id in "
                           "('big', 'float')").rows())
    assert prices == {"big": float(2**53), "float": 1.5}
    assert not letters(tmp_path / "spool")


def test_a_poison_record_the_dead_letter_folder_refuses_is_dropped_and_counted(
        isolated_lake: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    good_run("warm-up")  # creates the spool folder of this lake
    assert xr.flush(10)
    with unwritable(spool):
        poison_run()
        good_run("after")
        assert not xr.flush(10)
    stats = xr.stats()
    assert stats["dead_lettered"] == 0
    assert stats["dropped"] == {"encode_error": 3}
    assert runs_and_stages(isolated_lake)["poison"] == ("incomplete", ["fetch"])
    assert "after" in runs_and_stages(isolated_lake)
