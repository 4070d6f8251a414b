"""The demo pipelines and `xray-lake demo`: what lands in the lake, and what the CLI prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import xray_lake as xr
from xray_lake.cli.app import app, main
from xray_lake.demo.fashion_search import run_demo

LABELS = {"fashion_search", "similar_items"}
STAGE_TYPES = {"retrieval", "generation", "scoring", "filtering", "ranking", "raw"}


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, int, int]:
    """One 20-run demo shared by the lake tests (a high failure rate so a failure is certain).

    Returns (root, runs, failures). Seed 7 is deterministic; 20 runs hold both labels,
    strict queries (filter drops > 90%) and loose ones.
    """
    root = str(tmp_path_factory.mktemp("demo") / "lake")
    summary = run_demo(runs=20, root=root, seed=7, failure_rate=0.25)
    assert summary.flushed, xr.stats()
    assert set(summary.by_label) == LABELS
    assert summary.failures >= 1
    return root, summary.runs, summary.failures


def test_demo_lands_runs_stages_and_candidates_of_both_labels(
        demo_lake: tuple[str, int, int]) -> None:
    root, runs, _ = demo_lake
    lake = xr.Lake(root)
    per_label = dict(lake.sql("select label, count(*) from runs group by 1").iter_rows())
    assert set(per_label) == LABELS and sum(per_label.values()) == runs
    assert set(lake.sql("select distinct type from stages")["type"]) == STAGE_TYPES
    assert set(lake.sql("select distinct label from candidates")["label"]) == LABELS
    assert lake.sql("select count(*) from candidates").item() > 1000
    reasons = set(lake.sql("select distinct reason_label from candidates "
                           "where reason_label is not null")["reason_label"])
    assert {"wrong_category", "wrong_colour", "price_too_high", "out_of_stock"} <= reasons
    assert lake.sql("select count(*) from stages where validation_error is not null").item() == 0


def test_demo_has_runs_where_a_filter_eliminated_over_90_percent_and_runs_where_not(
        demo_lake: tuple[str, int, int]) -> None:
    lake = xr.Lake(demo_lake[0])
    ratios = lake.sql("select fail_ratio from stages where name = 'attribute-filters'")
    assert (ratios["fail_ratio"] > 0.9).sum() >= 2
    assert (ratios["fail_ratio"] < 0.9).sum() >= 2
    taus = lake.sql("select rank_kendall_tau from stages where name = 'rerank' "
                    "and rank_kendall_tau is not null")["rank_kendall_tau"]
    assert taus.n_unique() > 3  # the rerank reorders differently per shopper


def test_demo_records_a_catalog_timeout_as_a_failed_run(demo_lake: tuple[str, int, int]) -> None:
    root, _, failures = demo_lake
    lake = xr.Lake(root)
    failed = lake.sql("select run_id, error_code, error_message from runs "
                      "where status = 'failure'")
    assert failed.height == failures
    assert set(failed["error_code"]) == {"CatalogTimeout:CATALOG_TIMEOUT"}
    stage = lake.sql("select type, status, error_code from stages where run_id = ? "
                     "and status = 'failure'", [failed["run_id"][0]])
    assert stage.rows() == [("retrieval", "failure", "CatalogTimeout:CATALOG_TIMEOUT")]


def test_same_seed_gives_the_same_runs(tmp_path: Path) -> None:
    query = ("select split_part(run_id, '-', 3) as n, name, n_in, n_out, fail_ratio "
             "from stages order by n, seq")
    first = run_demo(runs=6, root=str(tmp_path / "a"), seed=3)
    second = run_demo(runs=6, root=str(tmp_path / "b"), seed=3)
    assert first.run_prefix != second.run_prefix  # ids never collide across demos
    assert xr.Lake(str(tmp_path / "a")).sql(query).equals(xr.Lake(str(tmp_path / "b")).sql(query))


@pytest.mark.slow
def test_cli_demo_prints_what_it_wrote_and_the_headline_answer(tmp_path: Path) -> None:
    root = tmp_path / "cli-lake"
    result = CliRunner().invoke(app, ["demo", "--runs", "10", "--root", str(root)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Recorded 10 runs" in out
    assert "candidate rows" in out and "Parquet files" in out
    assert "Runs where a filtering stage eliminated more than 90% of candidates" in out
    assert "attribute-filters" in out  # at least one row in the answer table
    assert "where type = 'filtering' and fail_ratio > 0.9" in out
    assert "xray-lake show " in out and "xray-lake why " in out
    assert "read_parquet(" in out and "hive_partitioning=true" in out
    assert xr.Lake(str(root)).sql("select count(*) from runs").item() == 10


def test_cli_error_is_one_line_on_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    monkeypatch.setattr(sys, "argv", ["xray-lake", "demo", "--root", str(not_a_folder / "lake")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("xray-lake: error: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_python_dash_m_help() -> None:
    done = subprocess.run([sys.executable, "-m", "xray_lake", "--help"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "demo" in done.stdout and "Usage" in done.stdout
