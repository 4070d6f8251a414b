"""Smaller findings of the adversarial pass: times past the calendar (the JSON language and
the CLI's --since/--until), look-alike labels."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from typer.testing import CliRunner

import xray_lake as xr
from xray_lake.errors import QueryError
from xray_lake.storage.layout import escape_label

COMPOSED, DECOMPOSED = "caf\u00e9", "cafe\u0301"


@pytest.fixture
def root(isolated_lake: str) -> str:
    with xr.run("shop", run_id="r1") as run, run.stage("s", type="filtering") as st:
        st.output([{"id": "a"}])
    assert xr.flush(10)
    return isolated_lake


@pytest.mark.parametrize("where", [
    {"$until": "9999-12-31"},
    {"$since": "1000000000d"},
    {"pipeline": {"$since": "999999999999w"}},
    {"stage": {"$until": "9999-12-31T23:59:59"}, "$since": "1000000000d"},
])
def test_times_past_the_calendar_are_query_errors(root: str, where: dict[str, object]) -> None:
    with xr.Lake(root) as lake, pytest.raises(QueryError, match="out of range"):
        lake.find(where)


def test_an_until_at_the_first_instant_of_the_calendar_matches_nothing(root: str) -> None:
    with xr.Lake(root) as lake:
        for where in ({"$until": "0001-01-01T00:00:00"},
                      {"stage": {"$until": "0001-01-01T00:00:00Z"}}):
            assert lake.find(where).height == 0


PAST_THE_CALENDAR = [
    ["runs", "--since", "1000000000d"],
    ["runs", "--until", "9999-12-31"],
    ["runs", "--since", "99999999999999999999w"],
    ["runs", "--since", "1" * 400 + "d"],
    ["stats", "--since", "1000000000d"],
    ["stats", "--since", "all", "--until", "9999-12-31"],
]


@pytest.mark.parametrize("args", PAST_THE_CALENDAR, ids=lambda a: " ".join(a)[:40])
def test_cli_windows_past_the_calendar_are_usage_errors(root: str, args: list[str]) -> None:
    from xray_lake.cli.app import app

    result = CliRunner().invoke(app, [*args, "--root", root])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "internal error" not in result.stderr and "out of range" in result.stderr


def test_cli_window_ending_at_the_first_instant_of_the_calendar_shows_no_runs(
        root: str) -> None:
    from xray_lake.cli.app import app

    result = CliRunner().invoke(app, ["runs", "--until", "0001-01-01T00:00", "--root", root])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "r1" not in result.stdout


@pytest.mark.parametrize("where", ['{"$until": "9999-12-31"}', '{"$since": "1000000000d"}'])
def test_cli_times_past_the_calendar_are_usage_errors(root: str, where: str) -> None:
    from xray_lake.cli.app import app

    result = CliRunner().invoke(app, ["query", "--where", where, "--root", root])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1
    assert "internal error" not in result.stderr and "out of range" in result.stderr


def test_composed_and_decomposed_labels_share_one_folder(isolated_lake: str) -> None:
    assert COMPOSED != DECOMPOSED
    assert unicodedata.normalize("NFC", DECOMPOSED) == COMPOSED
    for i, label in enumerate((COMPOSED, DECOMPOSED)):
        with xr.run(label, run_id=f"r{i}") as run, run.stage("s", type="filtering") as st:
            st.output([{"id": "a"}])
    assert xr.flush(10)
    assert escape_label(DECOMPOSED) == escape_label(COMPOSED)
    for table in ("runs", "stages", "candidates"):
        folders = [p.name for p in Path(isolated_lake, table).iterdir()]
        assert folders == [f"label={COMPOSED}"], folders
    with xr.Lake(isolated_lake) as lake:
        found = lake.sql("select label, count(*) as n from runs group by label")
        assert found.rows() == [(COMPOSED, 2)]
        assert xr.compact(isolated_lake, label=DECOMPOSED, before="2999-01-01").files_in == 6
