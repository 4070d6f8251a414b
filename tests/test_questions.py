"""The canonical questions of docs/questions.md, answered on demo data by the documented calls.

Each question has one Python call and one CLI command; the query text used here is checked
to appear verbatim in the document, so the document cannot drift from what is tested.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

import xray_lake as xr
from xray_lake.cli.app import app
from xray_lake.demo.fashion_search import run_demo
from xray_lake.query.questions import SCORE_DRIFT as Q5_SQL
from xray_lake.query.questions import SLOWEST_STAGE_P90 as Q7_SQL
from xray_lake.query.questions import TOP_DROP_REASONS as Q3_SQL
from xray_lake.sdk import recording

# Two weeks of demo runs built once for the module.
pytestmark = pytest.mark.slow

DOC = (Path(__file__).resolve().parent.parent / "docs" / "questions.md").read_text()

Q1_WHERE = '{"stage": {"type": "filtering", "$failRatio": {"$gt": 0.9}}}'
Q2_WHERE = ('{"pipeline": {"label": "fashion_search"}, '
            '"stage": {"type": "filtering", "$failRatio": {"$gt": 0.9}}}')
Q6_WHERE = '{"stage": {"type": "ranking", "$rankKendallTau": {"$gt": 0.95}}}'
Q8_WHERE = '{"pipeline": {"status": "failure"}, "stage": {"status": "failure"}}'
Q8_COLUMNS = ["run_id", "label", "name", "error_code", "error_message", "run_error_code"]
WEEK_AGO_S = 8 * 86400


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Two weeks of demo runs: 30 recorded 8 days ago (clock shifted), 30 today."""
    lake_root = str(tmp_path_factory.mktemp("questions") / "lake")
    real = time.time
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(recording, "_clock", lambda: real() - WEEK_AGO_S)
        earlier = run_demo(runs=30, root=lake_root, seed=11, failure_rate=0.2)
    now = run_demo(runs=30, root=lake_root, seed=7, failure_rate=0.2)
    assert earlier.flushed and now.flushed and now.failures >= 1
    return lake_root


@pytest.fixture(scope="module")
def lake(root: str) -> xr.Lake:
    return xr.Lake(root)


def cli(root: str, *args: str) -> pl.DataFrame:
    """A documented CLI command, run with --format json, as a frame."""
    result = CliRunner().invoke(app, [*args, "--root", root, "--format", "json"])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return pl.DataFrame(json.loads(result.stdout))


def documented(*snippets: str) -> None:
    for snippet in snippets:
        assert snippet in DOC, f"docs/questions.md does not show:\n{snippet}"


def test_the_lake_holds_two_weeks(lake: xr.Lake) -> None:
    dates = lake.sql("select distinct date from runs order by 1")["date"].to_list()
    assert len(dates) == 2


def test_q1_runs_where_a_filter_eliminated_over_90_percent(lake: xr.Lake, root: str) -> None:
    documented(f"lake.find({Q1_WHERE})", f"xray-lake query --where '{Q1_WHERE}'")
    rows = lake.find(json.loads(Q1_WHERE))
    assert rows.height > 0
    assert (rows["fail_ratio"] > 0.9).all() and set(rows["type"]) == {"filtering"}
    direct = lake.sql("select count(*), count(distinct run_id) from stages "
                      "where type = 'filtering' and fail_ratio > 0.9").row(0)
    assert (rows.height, rows["run_id"].n_unique()) == direct
    assert sorted(cli(root, "query", "--where", Q1_WHERE)["run_id"]) == sorted(rows["run_id"])


def test_q1_fast_form_gives_the_same_stages(lake: xr.Lake, root: str) -> None:
    names = ["run_id", "label", "name", "fail_ratio"]
    documented(f"lake.find({Q1_WHERE}, columns={json.dumps(names)})",
               f"xray-lake query --where '{Q1_WHERE}' --columns {','.join(names)}")
    fast = lake.find(json.loads(Q1_WHERE), columns=names)
    assert fast.columns == names
    full = lake.find(json.loads(Q1_WHERE)).select(names)
    assert sorted(fast.rows()) == sorted(full.rows()) and fast.height > 0
    by_cli = cli(root, "query", "--where", Q1_WHERE, "--columns", ",".join(names))
    assert sorted(by_cli.rows()) == sorted(fast.rows())


def test_q2_the_same_for_one_label(lake: xr.Lake, root: str) -> None:
    documented(f'lake.find({Q2_WHERE}, per="run")',
               f"xray-lake query --where '{Q2_WHERE}' --per run")
    runs = lake.find(json.loads(Q2_WHERE), per="run")
    assert set(runs["label"]) == {"fashion_search"}
    expected = lake.sql("select distinct run_id from stages where label = 'fashion_search' "
                        "and type = 'filtering' and fail_ratio > 0.9")["run_id"]
    assert sorted(runs["run_id"]) == sorted(expected) and runs["run_id"].is_unique().all()
    assert sorted(cli(root, "query", "--where", Q2_WHERE, "--per", "run")["run_id"]) == \
        sorted(runs["run_id"])


def test_q3_top_drop_reasons_per_filtering_stage_last_7_days(lake: xr.Lake, root: str) -> None:
    documented(Q3_SQL, "xray-lake stats --type filtering --since 7d")
    since = datetime.now(UTC) - timedelta(days=7)
    top = lake.sql(Q3_SQL, {"day": since.date().isoformat(), "since": since})
    assert top.height > 0 and (top["dropped"] > 0).all()
    assert top.group_by("label", "stage").len()["len"].max() <= 3  # type: ignore[operator]
    assert {"attribute-filters", "stock-filter", "in-stock"} == set(top["stage"])
    # only this week's runs count
    recent = lake.sql("select sum(reason_counts['out_of_stock']) from stages "
                      "where name = 'stock-filter' and started_at >= ?", [since]).item()
    total = lake.sql("select sum(reason_counts['out_of_stock']) from stages "
                     "where name = 'stock-filter'").item()
    stock = top.filter(pl.col("stage") == "stock-filter")["dropped"].item()
    assert stock == recent < total
    summary = cli(root, "stats", "--type", "filtering", "--since", "7d")
    for row in summary.iter_rows(named=True):
        mine = top.filter(pl.col("label") == row["label"], pl.col("stage") == row["stage"])
        assert row["top_reasons"] == ", ".join(f"{r} {n}" for r, n in
                                               mine.select("reason", "dropped").iter_rows())


def test_q4_why_a_candidate_never_reached_the_final_ranking(lake: xr.Lake, root: str) -> None:
    documented("lake.journey(", "xray-lake why ")
    run_id, candidate, reason = lake.sql(
        "select run_id, candidate_id, reason_label from candidates "
        "where stage_name = 'attribute-filters' and reason_label = 'price_too_high' "
        "order by run_id, in_position limit 1").row(0)
    path = lake.journey(run_id, candidate)
    assert path.verdict.startswith(f"dropped at attribute-filters: {reason} (price ")
    assert "rerank" not in path.steps["stage"].to_list()
    assert path.steps["passed"].to_list()[-1] is False
    result = CliRunner().invoke(app, ["why", run_id, candidate, "--root", root])
    assert result.exit_code == 0 and f"{candidate}: {path.verdict}" in result.stdout


def test_q5_scoring_stages_whose_median_moved_against_last_week(lake: xr.Lake,
                                                                root: str) -> None:
    pct = 1
    documented(Q5_SQL, 'lake.sql(Q5_SQL, {"pct": 2})',
               "xray-lake query \"" + Q5_SQL.replace("$pct", "2").split("\n", 1)[0])
    moved = lake.sql(Q5_SQL, {"pct": pct})
    assert moved.height >= 1  # the two seeds' query mixes differ enough
    # the same from scratch, in polars
    week_ago = datetime.now(UTC) - timedelta(days=7)
    scoring = lake.sql("select label, name, started_at, score_p50 from stages "
                       "where type = 'scoring'")
    this_week = scoring.filter(pl.col("started_at") >= week_ago)
    last_week = scoring.filter(pl.col("started_at") < week_ago)
    expected: dict[tuple[str, str], float] = {}
    for (label, name), group in this_week.group_by("label", "name"):
        before = last_week.filter(pl.col("label") == label, pl.col("name") == name)
        now_p50, then_p50 = group["score_p50"].median(), before["score_p50"].median()
        assert isinstance(now_p50, float) and isinstance(then_p50, float)
        change = round(100 * (now_p50 - then_p50) / abs(then_p50), 1)
        if abs(change) > pct:
            expected[(str(label), str(name))] = change
    assert {(r["label"], r["stage"]): r["change_pct"] for r in moved.iter_rows(named=True)} \
        == pytest.approx(expected)
    cli_sql = Q5_SQL.replace("$pct", str(pct))
    assert cli(root, "query", cli_sql).height == moved.height


def test_q6_ranking_stages_that_barely_reorder(lake: xr.Lake, root: str) -> None:
    documented(f"lake.find({Q6_WHERE})", f"xray-lake query --where '{Q6_WHERE}'")
    rows = lake.find(json.loads(Q6_WHERE))
    assert rows.height >= 1
    assert (rows["rank_kendall_tau"] > 0.95).all() and set(rows["type"]) <= {"ranking"}
    direct = lake.sql("select count(*) from stages where type = 'ranking' "
                      "and rank_kendall_tau > 0.95").item()
    assert rows.height == direct
    assert cli(root, "query", "--where", Q6_WHERE).height == direct


def test_q7_slowest_stage_per_label_at_p90(lake: xr.Lake, root: str) -> None:
    documented(Q7_SQL, "lake.sql(Q7_SQL)", "xray-lake query \"" + Q7_SQL.split("\n", 1)[0])
    slowest = lake.sql(Q7_SQL)
    stages = lake.sql("select label, name, duration_ms from stages")
    p90 = stages.group_by("label", "name").agg(pl.col("duration_ms").quantile(0.9, "linear"))
    for row in slowest.iter_rows(named=True):
        mine = p90.filter(pl.col("label") == row["label"]).sort("duration_ms", descending=True)
        assert row["slowest_stage"] == mine["name"][0]
        assert row["p90_ms"] == pytest.approx(mine["duration_ms"][0])
    assert slowest["label"].to_list() == ["fashion_search", "similar_items"]
    assert cli(root, "query", Q7_SQL).rows() == slowest.rows()


def test_q8_failed_runs_with_error_code_and_the_stage_that_raised(lake: xr.Lake,
                                                                  root: str) -> None:
    documented(f"lake.find({Q8_WHERE}, columns={json.dumps(Q8_COLUMNS)})",
               f"xray-lake query --where '{Q8_WHERE}' --columns {','.join(Q8_COLUMNS)}")
    rows = lake.find(json.loads(Q8_WHERE), columns=Q8_COLUMNS)
    failed = lake.sql("select run_id from runs where status = 'failure'")["run_id"]
    assert sorted(rows["run_id"]) == sorted(failed) and failed.len() >= 2
    assert set(rows["error_code"]) == {"CatalogTimeout:CATALOG_TIMEOUT"}
    assert set(rows["name"]) <= {"catalog-query", "same-category"}
    assert (rows["run_error_code"] == rows["error_code"]).all()
    assert sorted(cli(root, "query", "--where", Q8_WHERE, "--columns", ",".join(Q8_COLUMNS))
                  ["run_id"]) == sorted(failed)
