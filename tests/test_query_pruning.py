"""Queries filtered by label / date read only those partitions' files, in every table they scan."""

from __future__ import annotations

import glob
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import xray_lake as xr
from xray_lake.errors import LakeReadError
from xray_lake.query import run, stage
from xray_lake.query.builder import Query
from xray_lake.query.compiler import CompiledQuery
from xray_lake.query.jsonql import compile_find
from xray_lake.sdk import recording

DAYS = {"2024-01-01": 1704110400.0, "2024-01-05": 1704456000.0}  # noon UTC of each day
_PARTITION = re.compile(r"/(runs|stages|candidates)/label=([^/]+)/date=([^/]+)/")


@pytest.fixture
def two_label_lake(lake: Callable[[], xr.Lake], monkeypatch: pytest.MonkeyPatch) -> xr.Lake:
    """Labels a and b, each with runs on two dates, each run with a filtering stage."""
    for day, epoch in DAYS.items():
        monkeypatch.setattr(recording, "_clock", lambda epoch=epoch: epoch)
        for label in ("a", "b"):
            with xr.run(label, run_id=f"{label}-{day}") as r, \
                    r.stage("filter", type="filtering", passed="ok", reason_label="why") as st:
                items = [{"id": i, "ok": i == 0, "why": "too_far"} for i in range(3)]
                st.input(items)
                st.output(items)
    monkeypatch.undo()
    return lake()


def _scanned(lake: xr.Lake, compiled: CompiledQuery) -> Iterator[tuple[str, str, str]]:
    """(table, label, date) of every file DuckDB's scans read, from EXPLAIN ANALYZE."""
    plan = lake.connection.sql("EXPLAIN (ANALYZE, FORMAT json) " + compiled.sql,
                               params=list(compiled.params)).fetchall()[0][1]

    def walk(node: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
        info = node.get("extra_info", {})
        if info.get("Function") == "READ_PARQUET":
            for listed in str(info.get("Filename(s)", "")).split(", "):
                # An unpruned scan lists the view's glob instead of the files.
                for name in sorted(glob.glob(listed)) if "*" in listed else [listed]:
                    match = _PARTITION.search(name.replace("\\", "/"))
                    assert match, f"unexpected scan file {name!r} in {info}"
                    yield match.group(1), match.group(2), match.group(3)
        for child in node.get("children", []):
            yield from walk(child)

    for top in json.loads(plan)["operator"]:
        yield from walk(top)


RESTRICTED: dict[str, tuple[Callable[[], CompiledQuery], set[tuple[str, str]]]] = {
    "label": (lambda: compile_find({"pipeline": {"label": "a"},
                                    "stage": {"type": "filtering"}}, columns="all"),
              {("a", "2024-01-01"), ("a", "2024-01-05")}),
    "label_and_since": (lambda: compile_find({"pipeline": {"label": "a"}, "$since": "2024-01-03",
                                              "candidate": {"passed": False}}),
                        {("a", "2024-01-05")}),
    "until_per_run": (lambda: compile_find({"$until": "2024-01-02",
                                            "stage": {"$failRatio": {"$gt": 0.5}}}, per="run"),
                      {("a", "2024-01-01"), ("b", "2024-01-01")}),
    "builder_label_date": (lambda: Query().where(run.label == "b", stage.date >= "2024-01-02",
                                                 stage.type == "filtering").per_run().compile(),
                           {("b", "2024-01-05")}),
}


@pytest.mark.parametrize("name", sorted(RESTRICTED))
def test_restricted_query_scans_only_its_partitions(two_label_lake: xr.Lake, name: str) -> None:
    case, allowed = RESTRICTED[name]
    compiled = case()
    assert two_label_lake.sql(compiled.sql, list(compiled.params)).height > 0
    scanned = set(_scanned(two_label_lake, compiled))
    assert {(label, date) for _, label, date in scanned} <= allowed, scanned
    tables = {"runs", "stages"} | ({"candidates"} if "EXISTS" in compiled.sql else set())
    assert {table for table, _, _ in scanned} == tables  # and every table was scanned


def test_unrestricted_query_scans_every_partition(two_label_lake: xr.Lake) -> None:
    scanned = set(_scanned(two_label_lake, compile_find({"candidate": {"passed": False}})))
    assert {(label, date) for _, label, date in scanned} == {
        (label, day) for label in ("a", "b") for day in DAYS
    }


def test_restricted_query_never_opens_other_partitions(two_label_lake: xr.Lake) -> None:
    root = Path(two_label_lake.root)
    for path in root.glob("*/label=b/*/*.parquet"):
        path.write_bytes(b"not parquet" * 50)
    restricted = compile_find({"pipeline": {"label": "a"}, "candidate": {"passed": False}})
    assert xr.Lake(str(root)).sql(restricted.sql, list(restricted.params)).height == 2
    with pytest.raises(LakeReadError):
        xr.Lake(str(root)).find({"candidate": {"passed": False}})
