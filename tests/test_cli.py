"""The data commands (`runs`, `show`, `why`, `query`, `stats`): output formats and exit codes."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner, Result

import xray_lake as xr
from xray_lake.cli.app import app, main
from xray_lake.cli.commands import COMMANDS
from xray_lake.cli.output import parse_when
from xray_lake.demo.fashion_search import run_demo

FORMATS = ("csv", "json", "ndjson", "parquet")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One 30-run demo for the whole module (a high failure rate so failures are certain)."""
    lake_root = str(tmp_path_factory.mktemp("cli") / "lake")
    summary = run_demo(runs=30, root=lake_root, failure_rate=0.2)
    assert summary.flushed and summary.failures >= 1
    return lake_root


@pytest.fixture(scope="module")
def db(root: str) -> xr.Lake:
    return xr.Lake(root)


@pytest.fixture(scope="module")
def dropped(db: xr.Lake) -> tuple[str, str, str]:
    """(run_id, candidate_id, reason_label) of a candidate a filter dropped."""
    row = db.sql("select run_id, candidate_id, reason_label from candidates "
                 "where passed = false and reason_label is not null "
                 "order by run_id, stage_id, in_position limit 1").row(0)
    return str(row[0]), str(row[1]), str(row[2])


def invoke(root: str, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "--root", root])


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def read(result: Result, fmt: str, out: Path) -> pl.DataFrame:
    """A command's data output back as a frame, whichever format it was written in."""
    if fmt == "csv":
        return pl.read_csv(io.StringIO(result.stdout))
    if fmt == "json":
        return pl.DataFrame(json.loads(result.stdout))
    if fmt == "ndjson":
        return pl.DataFrame([json.loads(line) for line in result.stdout.splitlines()])
    return pl.read_parquet(out)


def run_format(root: str, fmt: str, tmp_path: Path, *args: str) -> pl.DataFrame:
    out = tmp_path / "out.parquet"
    extra = ["--format", fmt] + (["--output", str(out)] if fmt == "parquet" else [])
    result = ok(invoke(root, *args, *extra))
    if fmt == "parquet":
        assert result.stdout == "" and f"rows to {out}" in result.stderr
    return read(result, fmt, out)


# --- runs -----------------------------------------------------------------------------------


def test_runs_table_lists_the_newest_runs_first(root: str, db: xr.Lake) -> None:
    out = ok(invoke(root, "runs", "--limit", "5")).stdout
    newest = db.sql("select run_id from runs order by started_at desc limit 5")["run_id"]
    lines = [line for line in out.splitlines() if line.split(" ")[0] in set(newest)]
    assert [line.split(" ")[0] for line in lines] == newest.to_list()
    assert "run_id" in out and "status" in out


def test_runs_filters_by_label_status_and_window(root: str, db: xr.Lake) -> None:
    frame = pl.read_csv(io.StringIO(ok(invoke(
        root, "runs", "--label", "fashion_search", "--status", "failure", "--since", "1d",
        "--limit", "0", "--format", "csv")).stdout))
    expected = db.sql("select count(*) from runs where label = 'fashion_search' "
                      "and status = 'failure'").item()
    assert frame.height == expected >= 1
    assert set(frame["status"]) == {"failure"} and set(frame["label"]) == {"fashion_search"}
    assert frame["error_code"].str.starts_with("CatalogTimeout").all()
    old = ok(invoke(root, "runs", "--until", "2001-01-01", "--format", "csv")).stdout
    assert old.strip() == ",".join(frame.columns)  # header only: nothing that old


@pytest.mark.parametrize("fmt", FORMATS)
def test_runs_in_every_format(root: str, db: xr.Lake, fmt: str, tmp_path: Path) -> None:
    frame = run_format(root, fmt, tmp_path, "runs", "--limit", "0")
    assert frame.height == db.sql("select count(*) from runs").item()
    assert frame.columns[:2] == ["run_id", "label"]


def test_runs_reads_the_root_from_the_environment(root: str) -> None:
    result = ok(CliRunner().invoke(app, ["runs", "-n", "1", "-f", "csv"],
                                   env={"XRAY_LAKE_ROOT": root}))
    assert len(result.stdout.splitlines()) == 2


# --- show -----------------------------------------------------------------------------------


def test_show_prints_the_header_and_the_funnel_with_bars(root: str, db: xr.Lake) -> None:
    run_id = db.sql("select run_id from stages where name = 'attribute-filters' "
                    "order by abs(fail_ratio - 0.5) limit 1").item()
    out = ok(invoke(root, "show", run_id)).stdout
    assert out.splitlines()[0].startswith(f"{run_id}  fashion_search  success")
    assert "attribute-filters" in out and "rerank" in out
    assert "█" in out and "·" in out  # a bar that is partly filled
    top = db.funnel(run_id).filter(pl.col("name") == "attribute-filters")["top_reasons"][0]
    assert top.split(", ")[0] in out


def test_show_of_a_failed_run_names_the_error_and_the_stage(root: str, db: xr.Lake) -> None:
    run_id = db.sql("select run_id from runs where status = 'failure' limit 1").item()
    out = ok(invoke(root, "show", run_id)).stdout
    assert "failure" in out.splitlines()[0]
    assert "error at " in out and "CatalogTimeout:CATALOG_TIMEOUT" in out


@pytest.mark.parametrize("fmt", FORMATS)
def test_show_in_every_format(root: str, db: xr.Lake, fmt: str, tmp_path: Path) -> None:
    run_id = db.sql("select run_id from runs where status = 'success' limit 1").item()
    frame = run_format(root, fmt, tmp_path, "show", run_id)
    assert frame["name"].to_list() == db.funnel(run_id)["name"].to_list()
    assert {"n_in", "n_out", "fail_ratio", "top_reasons", "duration_ms"} <= set(frame.columns)


# --- why ------------------------------------------------------------------------------------


def test_why_prints_the_journey_and_the_verdict(root: str,
                                                 dropped: tuple[str, str, str]) -> None:
    run_id, candidate, reason = dropped
    out = ok(invoke(root, "why", run_id, candidate)).stdout
    assert f"{candidate}: dropped at " in out and reason in out
    assert "stage" in out.splitlines()[0]


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_why_for_a_candidate_the_run_never_saw_is_a_one_line_data_error(
        root: str, dropped: tuple[str, str, str], fmt: str) -> None:
    result = invoke(root, "why", dropped[0], "no-such-product", "--format", fmt)
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.stderr.startswith("xray-lake: error: no candidate 'no-such-product' in run ")
    assert "never retrieved, or the id is mistyped" in result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == ""


@pytest.mark.parametrize("fmt", FORMATS)
def test_why_in_every_format_puts_the_verdict_on_stderr(
        root: str, dropped: tuple[str, str, str], fmt: str, tmp_path: Path) -> None:
    run_id, candidate, _ = dropped
    out = tmp_path / "out.parquet"
    extra = ["--output", str(out)] if fmt == "parquet" else []
    result = ok(invoke(root, "why", run_id, candidate, "--format", fmt, *extra))
    frame = read(result, fmt, out)
    assert frame["passed"].to_list()[-1] is False
    assert "dropped at" in result.stderr


# --- query ----------------------------------------------------------------------------------


def test_query_runs_sql(root: str) -> None:
    out = ok(invoke(root, "query", "select label, count(*) as n from runs group by 1 "
                    "order by 1", "--format", "csv")).stdout
    frame = pl.read_csv(io.StringIO(out))
    assert frame["label"].to_list() == ["fashion_search", "similar_items"]
    assert frame["n"].sum() == 30


def test_query_reads_sql_from_stdin(root: str) -> None:
    result = ok(CliRunner().invoke(app, ["query", "-", "--root", root, "-f", "csv"],
                                   input="select count(*) as n from runs"))
    assert result.stdout.splitlines() == ["n", "30"]


@pytest.mark.parametrize("fmt", ("table", *FORMATS))
def test_query_where_in_every_format(root: str, db: xr.Lake, fmt: str, tmp_path: Path) -> None:
    where = '{"stage": {"type": "filtering", "$failRatio": {"$gt": 0.9}}}'
    expected = db.sql("select count(*) from stages where type = 'filtering' "
                      "and fail_ratio > 0.9").item()
    if fmt == "table":
        out = ok(invoke(root, "query", "--where", where)).stdout
        assert out.count("attribute-filters") == expected
        return
    frame = run_format(root, fmt, tmp_path, "query", "--where", where)
    assert frame.height == expected
    assert (frame["fail_ratio"] > 0.9).all()


def test_query_where_per_run(root: str, db: xr.Lake) -> None:
    out = ok(invoke(root, "query", "--where", '{"pipeline": {"status": "failure"}}',
                    "--per", "run", "--format", "json")).stdout
    rows = json.loads(out)
    assert {r["run_id"] for r in rows} == set(
        db.sql("select run_id from runs where status = 'failure'")["run_id"])


def test_query_where_per_run_shows_the_run_input(root: str) -> None:
    where = '{"stage": {"type": "filtering", "$failRatio": {"$gt": 0.9}}}'
    rows = json.loads(ok(invoke(root, "query", "--where", where, "--per", "run",
                                "-f", "json")).stdout)
    assert rows and all(r["input_json"] and r["n_matching_stages"] >= 1 for r in rows)
    table = ok(invoke(root, "query", "--where", where, "--per", "run")).stdout
    assert "input_json" in table.splitlines()[0]


def test_query_where_shows_a_narrow_default_and_everything_with_columns_all(root: str) -> None:
    where = '{"stage": {"type": "filtering", "$failRatio": {"$gt": 0.9}}}'
    narrow = json.loads(ok(invoke(root, "query", "--where", where, "-f", "json")).stdout)
    assert list(narrow[0]) == ["run_id", "label", "date", "stage_id", "name", "type", "n_in",
                               "n_out", "n_passed", "n_failed", "fail_ratio", "pass_ratio"]
    wide = json.loads(ok(invoke(root, "query", "--where", where, "--columns", "all",
                                "-f", "json")).stdout)
    assert len(wide) == len(narrow)
    assert {"run_status", "error_message", "reason_counts", *narrow[0]} <= set(wide[0])


def test_query_where_keeps_only_the_named_columns(root: str, db: xr.Lake) -> None:
    where = '{"stage": {"type": "filtering", "$failRatio": {"$gt": 0.9}}}'
    out = ok(invoke(root, "query", "--where", where, "--columns",
                    "run_id, name,fail_ratio,run_status", "-f", "json")).stdout
    rows = json.loads(out)
    assert rows and all(list(r) == ["run_id", "name", "fail_ratio", "run_status"] for r in rows)
    assert len(rows) == db.sql("select count(*) from stages where type = 'filtering' "
                               "and fail_ratio > 0.9").item()


def test_query_where_reads_a_json_file(root: str, tmp_path: Path) -> None:
    spec = tmp_path / "q.json"
    spec.write_text('{"stage": {"type": "ranking"}}')
    out = ok(invoke(root, "query", "--where", f"@{spec}", "-f", "ndjson")).stdout
    assert {json.loads(line)["type"] for line in out.splitlines()} == {"ranking"}


def test_query_csv_writes_maps_as_json(root: str) -> None:
    out = ok(invoke(root, "query", "select reason_counts from stages where reason_counts "
                    "is not null limit 1", "-f", "csv")).stdout
    assert isinstance(json.loads(pl.read_csv(io.StringIO(out))["reason_counts"][0]), dict)


def test_table_output_to_a_file(root: str, tmp_path: Path) -> None:
    out = tmp_path / "runs.txt"
    ok(invoke(root, "runs", "--output", str(out)))
    assert "run_id" in out.read_text() and "fashion_search" in out.read_text()


# --- stats ----------------------------------------------------------------------------------


def test_stats_summarises_each_label_and_stage(root: str, db: xr.Lake) -> None:
    frame = pl.read_csv(io.StringIO(ok(invoke(root, "stats", "-f", "csv")).stdout))
    expected = db.sql("select count(distinct (label, name)) from stages").item()
    assert frame.height == expected
    row = frame.filter(pl.col("stage") == "attribute-filters").row(0, named=True)
    n_runs = db.sql("select count(*) from stages where name = 'attribute-filters'").item()
    assert row["runs"] == n_runs
    assert row["fail_ratio_p90"] >= row["fail_ratio_mean"] * 0.5
    assert row["duration_p90_ms"] >= row["duration_p50_ms"]
    assert len(row["top_reasons"].split(", ")) == 3


def test_stats_type_filter_and_table(root: str) -> None:
    out = ok(invoke(root, "stats", "--type", "filtering", "--label", "similar_items")).stdout
    assert "in-stock" in out and "attribute-filters" not in out and "top-k" not in out


def test_stats_window_without_runs_is_empty(root: str) -> None:
    result = ok(invoke(root, "stats", "--since", "2001-01-01", "--until", "2001-02-01"))
    assert "try --since all" in result.stderr


@pytest.mark.parametrize("fmt", FORMATS)
def test_stats_in_every_format(root: str, fmt: str, tmp_path: Path) -> None:
    frame = run_format(root, fmt, tmp_path, "stats", "--since", "all")
    assert set(frame["label"]) == {"fashion_search", "similar_items"}


# --- errors: one line on stderr, exit 2 for usage, 1 for data -------------------------------

BAD: list[tuple[list[str], int, str]] = [
    (["runs", "--since", "yesterdayish"], 2, "--since"),
    (["runs", "--limit", "-1"], 2, "--limit"),
    (["runs", "--status", "maybe"], 2, "--status"),
    (["runs", "--bogus"], 2, "--bogus"),
    (["runs", "--format", "xml"], 2, "--format"),
    (["runs", "--format", "parquet"], 2, "--output"),
    (["show"], 2, "RUN_ID"),
    (["show", "no-such-run"], 1, "no run 'no-such-run'"),
    (["show", "r", "extra"], 2, "extra"),
    (["why", "r"], 2, "CANDIDATE_ID"),
    (["why", "no-such-run", "p-1"], 1, "no run 'no-such-run'"),
    (["query"], 2, "exactly one"),
    (["query", "select 1", "--where", "{}"], 2, "exactly one"),
    (["query", "selec 1"], 2, "syntax error"),
    (["query", "select * from nope"], 2, "nope"),
    (["query", "--where", "{bad"], 2, "not valid JSON"),
    (["query", "--where", "[1]"], 2, "JSON object"),
    (["query", "--where", '{"stage": {"$bogus": 1}}'], 2, "$bogus"),
    (["query", "--where", "@/no/such/file.json"], 2, "cannot read"),
    (["query", "select 1", "--per", "run"], 2, "--per"),
    (["query", "--where", "{}", "--per", "sometimes"], 2, "--per"),
    (["query", "select 1", "--columns", "run_id"], 2, "--columns"),
    (["query", "--where", "{}", "--columns", " , "], 2, "--columns"),
    (["query", "--where", "{}", "--columns", "fail_ration"], 2, "Did you mean 'fail_ratio'"),
    (["stats", "--type", "bogus"], 2, "stage type"),
    (["stats", "--since", "2026-13-45"], 2, "--since"),
    (["stats", "--since", "2021-01-01", "--until", "2020-01-01"], 2, "--until"),
    (["nosuchcommand"], 2, "nosuchcommand"),
]


@pytest.mark.parametrize(("args", "code", "mentions"), BAD, ids=[" ".join(a) for a, _, _ in BAD])
def test_bad_arguments_are_one_line_on_stderr(root: str, args: list[str], code: int,
                                              mentions: str) -> None:
    result = CliRunner().invoke(app, [*args, "--root", root] if args[0] != "nosuchcommand"
                                else args)
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.stderr.startswith("xray-lake: error: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert mentions in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("command", [["runs"], ["show", "r"], ["why", "r", "c"],
                                     ["query", "select 1"], ["stats"]])
def test_missing_lake_root_is_a_data_error(tmp_path: Path, command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--root", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert result.stderr.startswith("xray-lake: error: no lake at ")
    assert result.stderr.count("\n") == 1


def test_unreadable_lake_file_is_a_data_error(tmp_path: Path, root: str) -> None:
    broken = tmp_path / "lake"
    bad = broken / "stages" / "label=x" / "date=2024-01-01" / "part-v1-bad.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not parquet at all")
    result = CliRunner().invoke(app, ["stats", "--since", "all", "--root", str(broken)])
    assert result.exit_code == 1, result.stderr
    assert result.stderr.startswith("xray-lake: error: ")
    assert "part-v1-bad.parquet" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_unwritable_output_is_a_data_error(root: str, tmp_path: Path) -> None:
    result = invoke(root, "runs", "-f", "csv", "-o", str(tmp_path / "missing" / "out.csv"))
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "No such file or directory" in result.stderr


def test_console_script_reports_usage_errors_on_one_line(
        root: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["xray-lake", "query", "--where", "{bad", "--root", root])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("xray-lake: error: ") and err.count("\n") == 1


def test_every_command_has_examples_in_its_help() -> None:
    for command in ("runs", "show", "why", "query", "stats"):
        result = CliRunner().invoke(app, [command, "--help"])
        assert result.exit_code == 0
        assert "Examples" in result.stdout and f"xray-lake {command}" in result.stdout
        assert "--root" in result.stdout and "--format" in result.stdout


@pytest.mark.parametrize("command", [[], *([name] for name in COMMANDS)])
def test_help_is_clicks_plain_layout_without_type_noise_or_the_storage_block(
        command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert out.startswith(f"Usage: xray-lake {' '.join(command)}".rstrip())
    assert not re.search(r"<(str|bool|int|float|path|text)>|\{[A-Z_]+\}|\[\[", out), out
    assert "endpoint_url" not in out and "secret_access_key" not in out
    assert "-h, --help" in out


def test_help_storage_describes_every_storage_option_once(tmp_path: Path) -> None:
    from xray_lake.config import STORAGE_OPTIONS

    out = ok(CliRunner().invoke(app, ["help", "storage"])).stdout
    assert all(key in out for key in STORAGE_OPTIONS) and "--storage-option" in out
    assert ok(CliRunner().invoke(app, ["help", "why"])).stdout == \
        ok(CliRunner().invoke(app, ["why", "--help"])).stdout
    bad = CliRunner().invoke(app, ["help", "stroage"])
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1 and "storage" in bad.stderr
    # the option is still taken (and checked) by every command, only not listed
    result = CliRunner().invoke(app, ["runs", "--root", str(tmp_path), "--storage-option", "x"])
    assert result.exit_code == 2 and "is not KEY=VALUE" in result.stderr


def test_version_prints_the_version() -> None:
    from xray_lake import __version__

    assert ok(CliRunner().invoke(app, ["--version"])).stdout == f"xray-lake {__version__}\n"


def test_durations_print_with_two_decimals_whatever_their_size() -> None:
    from xray_lake.cli.output import ms_cell
    from xray_lake.cli.show import human_ms

    assert [human_ms(v) for v in (0.00497, 0.03, 8.76, 11.0, 1240.0, 185_000.0, None)] == [
        "<0.01 ms", "0.03 ms", "8.76 ms", "11.00 ms", "1.24 s", "3 min 05 s", "-"]
    assert [ms_cell(v) for v in (0.0, 0.004, 1204.5, None)] == ["0.00", "<0.01", "1,204.50", ""]


def test_show_header_says_1_stage_not_1_stages() -> None:
    from xray_lake.cli.show import header
    from xray_lake.query.journey import RunInfo

    one = RunInfo("r-1", "shop", "2024-05-01", status="success", duration_ms=5.7, n_stages=1)
    assert "  1 stage" in header(one).plain and "stages" not in header(one).plain
    assert "  2 stages" in header(RunInfo("r-2", "shop", "2024-05-01", n_stages=2)).plain


def test_relative_and_absolute_times() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)
    assert parse_when("7d", now=now) == now - timedelta(days=7)
    assert parse_when("90m", now=now) == now - timedelta(minutes=90)
    assert parse_when("2024-05-01", now=now) == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_when("2024-05-01", end=True, now=now) == datetime(2024, 5, 2, tzinfo=UTC)
    assert parse_when("2024-05-01T06:30", now=now) == datetime(2024, 5, 1, 6, 30, tzinfo=UTC)
