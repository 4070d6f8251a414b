"""xray_lake.testing: users can assert on what their pipeline recorded, with no lake."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pytest

import xray_lake as xr
from xray_lake.testing import CapturedRecords, capture_records, xray_records  # noqa: F401


@xr.filtering_stage("price-filter", passed="ok", reason_label="why")
def price_filter(items: Annotated[list[dict[str, Any]], xr.Candidates()]) -> list[dict[str, Any]]:
    return [{**p, "ok": p["price"] < 50, "why": None if p["price"] < 50 else "price_too_high"}
            for p in items]


def test_capture_records_holds_runs_stages_and_candidates_in_memory(tmp_path: Path) -> None:
    xr.configure(root=str(tmp_path / "lake"))
    with capture_records() as records:
        price_filter([{"id": 1, "price": 10}, {"id": 2, "price": 90}])
        stage = records.stage("price-filter")
        assert stage["fail_ratio"] == 0.5
        assert records.runs.height == 1
        assert records.candidates["candidate_id"].to_list() == ["1", "2"]
        assert records.candidates["label"].to_list() == ["price-filter", "price-filter"]
    assert not (tmp_path / "lake").exists()  # nothing reached the lake


def test_the_pytest_fixture_captures_the_tests_records(
    xray_records: CapturedRecords,  # noqa: F811 - the fixture imported above
) -> None:
    price_filter([{"id": 1, "price": 99}])
    assert xray_records.stage("price-filter")["reason_counts"] == {"price_too_high": 1}


def test_records_after_the_block_go_to_the_lake_again(tmp_path: Path) -> None:
    xr.configure(root=str(tmp_path / "lake"))
    with capture_records():
        price_filter([{"id": 1, "price": 1}])
    price_filter([{"id": 2, "price": 1}])
    assert xr.flush(10)
    assert xr.Lake(str(tmp_path / "lake")).sql("select count(*) as n from runs")["n"][0] == 1


def test_empty_capture_gives_typed_empty_frames() -> None:
    with capture_records() as records:
        assert records.stages.height == 0
        assert "fail_ratio" in records.stages.columns
        with pytest.raises(AssertionError, match="found 0"):
            records.stage("nope")
