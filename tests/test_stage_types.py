"""Custom stage types: registered once, recorded like their base type under their own name,
usable from every front end; misuse of types and of stage results raises at decoration."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import pytest
from test_sdk_decoration_errors import _decoration_error
from typer.testing import CliRunner

import xray_lake as xr
from xray_lake.cli.app import app
from xray_lake.query import stage as stage_col

Item = dict[str, Any]
REPO = Path(__file__).parent.parent


pytestmark = pytest.mark.usefixtures("plugin_registry")


def register_judge(**overrides: Any) -> None:
    def reject_share(candidates: pl.DataFrame, stage: Mapping[str, Any]) -> float | None:
        return None if candidates.is_empty() else float((candidates["verdict"] == "reject").mean())

    options: dict[str, Any] = {
        "base": "filtering",
        "candidate_fields": {"verdict": "reason_label", "rationale": "reason_text",
                             "keep": "passed", "confidence": None},
        "required": ["verdict", "rationale"],
        "metrics": [reject_share],
    }
    xr.register_stage_type("llm_judge", **{**options, **overrides})


def judged(items: list[Item]) -> list[Item]:
    return [{**p, "verdict": "reject" if p["price"] > 20 else "accept", "rationale": "price",
             "keep": p["price"] <= 20, "confidence": 0.9} for p in items]


PRODUCTS = [{"id": f"p{i}", "price": 10 * i} for i in range(5)]  # 0..40: 3 kept, 2 rejected


def test_a_custom_type_is_recorded_like_its_base_under_its_own_name(
        lake: Callable[[], xr.Lake]) -> None:
    register_judge()

    @xr.stage("judge", type="llm_judge")
    def judge(items: list[Item]) -> list[Item]:
        return judged(items)

    assert judge(PRODUCTS) == judged(PRODUCTS)  # the user's value, untouched
    db = lake()
    row = db.sql("select * from stages").to_dicts()[0]
    assert row["type"] == "llm_judge" and row["name"] == "judge"
    assert (row["n_in"], row["n_out"], row["n_failed"]) == (5, 3, 2)  # filtering metrics
    assert row["reason_counts"] == {"reject": 2}  # the verdict fills the reason label
    assert row["metrics"] == {"reject_share": 0.4}
    assert row["validation_error"] is None
    rows = db.sql("select stage_type, candidate_id, passed, reason_label, reason_text "
                  "from candidates order by candidate_id").to_dicts()
    assert {r["stage_type"] for r in rows} == {"llm_judge"}
    assert [r["passed"] for r in rows] == [True, True, True, False, False]
    assert rows[4]["reason_label"] == "reject" and rows[4]["reason_text"] == "price"


def test_every_query_front_end_finds_a_custom_type(lake: Callable[[], xr.Lake],
                                                   isolated_lake: str) -> None:
    register_judge()
    with xr.run("qa", run_id="r1"), xr.stage("judge", type="llm_judge") as st:
        st.input(PRODUCTS)
        st.output(judged(PRODUCTS))
    db = lake()
    assert db.find({"stage": {"type": "llm_judge"}})["name"].to_list() == ["judge"]
    assert db.find({"stage": {"type": "llm_judge", "$metrics.reject_share": {"$gt": 0.3}}}
                   ).height == 1
    assert db.query().where(stage_col.type == "llm_judge").to_polars().height == 1
    assert db.journey("r1", "p4").verdict.startswith("dropped at judge")
    cli = CliRunner()
    where = '{"stage": {"type": "llm_judge"}}'
    out = cli.invoke(app, ["query", "--where", where, "--format", "csv", "--root", isolated_lake])
    assert out.exit_code == 0 and "llm_judge" in out.stdout
    out = cli.invoke(app, ["stats", "--type", "llm_judge", "--since", "all", "--format", "csv",
                           "--root", isolated_lake])
    assert out.exit_code == 0 and "judge" in out.stdout and "reject 2" in out.stdout
    out = cli.invoke(app, ["stats", "--type", "llm_judges", "--root", isolated_lake])
    assert out.exit_code == 2 and "not a stage type" in out.stderr


def test_type_fields_read_the_types_fields_from_other_keys(lake: Callable[[], xr.Lake]) -> None:
    register_judge()

    @xr.stage("judge", type="llm_judge", id="sku",
              type_fields={"verdict": "decision", "confidence": "p"})
    def judge(items: list[Item]) -> list[Item]:
        return [{**p, "decision": "reject", "rationale": "no", "keep": False, "p": 0.5}
                for p in items]

    seen: list[list[float]] = []

    @xr.metric("llm_judge")
    def confidence(candidates: pl.DataFrame, stage: Mapping[str, Any]) -> float:
        seen.append(candidates["confidence"].to_list())
        return float(candidates["confidence"].mean())  # type: ignore[arg-type]

    judge([{"sku": "a"}, {"sku": "b"}])
    row = lake().sql("select reason_counts, metrics from stages").to_dicts()[0]
    assert row["reason_counts"] == {"reject": 2}
    assert row["metrics"] == {"reject_share": 1.0, "confidence": 0.5}
    assert seen == [[0.5, 0.5]]


def test_missing_required_fields_are_a_validation_error(lake: Callable[[], xr.Lake]) -> None:
    register_judge()

    @xr.stage("judge", type="llm_judge")
    def judge(items: list[Item]) -> list[Item]:
        return [{**p, "verdict": "accept", "keep": True} for p in items]  # no rationale

    judge(PRODUCTS)
    error = lake().sql("select validation_error from stages").item()
    assert "5 of 5 candidates have no 'rationale' (required by stage type 'llm_judge'" in error


def test_a_raw_based_type_runs_its_plugins_on_the_stage_row(lake: Callable[[], xr.Lake]) -> None:
    def output_size(candidates: Any, stage: Mapping[str, Any]) -> float:
        assert candidates.height == 0
        return float(len(stage["output_json"]))

    xr.register_stage_type("prompt", base="raw", metrics=[output_size])

    @xr.stage("build-prompt", type="prompt")
    def build_prompt(question: str) -> str:
        return f"answer: {question}"

    build_prompt("why")
    row = lake().sql("select type, metrics from stages").to_dicts()[0]
    assert row == {"type": "prompt", "metrics": {"output_size": float(len('"answer: why"'))}}


def test_the_same_definition_may_register_again_another_may_not() -> None:
    register_judge()
    register_judge()  # identical: a module imported twice
    with pytest.raises(xr.DecorationError, match="already registered with a different") as e:
        register_judge(required=["verdict"])
    assert f"{__file__}:" in str(e.value) and "Fix:" in str(e.value)


@pytest.mark.parametrize(("name", "options", "expected"), [
    ("filtering", {"base": "filtering"}, "stage type 'filtering' is a built-in type"),
    ("has space", {"base": "raw"}, "is not a name"),
    ("dedup", {"base": "filterng"}, "did you mean 'filtering'?"),
    ("dedup", {"base": "filtering", "candidate_fields": {"similarity": "score"}},
     "'score' is not a column a filtering stage fills (those are: passed, reason_label"),
    ("dedup", {"base": "filtering",
               "candidate_fields": {"a": "reason_label", "b": "reason_label"}},
     "fields 'a' and 'b' both fill 'reason_label'"),
    ("dedup", {"base": "filtering", "candidate_fields": {"id": None}}, "is 'id'"),
    ("dedup", {"base": "filtering", "required": ["ghost"]}, "'ghost' is not one of"),
    ("dedup", {"base": "filtering", "required": "ghost"}, "is a string"),
    ("dedup", {"base": "raw", "candidate_fields": ["x"]}, "a raw-based stage type has no"),
])
def test_bad_stage_type_definitions_are_rejected(name: str, options: dict[str, Any],
                                                 expected: str) -> None:
    with pytest.raises(xr.DecorationError) as e:
        xr.register_stage_type(name, **options)
    assert expected in str(e.value)
    assert f"{__file__}:" in str(e.value) and "Fix:" in str(e.value)


def test_an_unknown_type_names_the_nearest_one_and_where_it_was_written() -> None:
    register_judge()
    with pytest.raises(xr.DecorationError) as e:
        @xr.stage("judge", type="llm_jugde")
        def judge(items: list[Item]) -> list[Item]:
            return items
    message = str(e.value)
    assert "unknown stage type 'llm_jugde' for stage 'judge'" in message
    assert "did you mean 'llm_judge'?" in message
    assert f"{__file__}:" in message and "xr.register_stage_type('llm_jugde'" in message


def test_stage_options_must_agree_with_the_type() -> None:
    register_judge()
    with pytest.raises(xr.DecorationError, match="passed= is filled by stage type 'llm_judge'"):
        xr.stage("judge", type="llm_judge", passed="ok")
    with pytest.raises(xr.DecorationError, match="did you mean 'verdict'"):
        xr.stage("judge", type="llm_judge", type_fields={"verdikt": "v"})
    with pytest.raises(xr.DecorationError, match="registered stage types only"):
        xr.stage("f", type="filtering", type_fields={"verdict": "v"})
    with pytest.raises(xr.DecorationError, match="max_out_of_top= applies only"):
        xr.stage("judge", type="llm_judge", max_out_of_top=3)
    with pytest.warns(DeprecationWarning, match="max_failed=3"):
        xr.stage("judge", type="llm_judge", max_failed=3)  # the base's options apply


def test_run_stage_blocks_do_not_decorate() -> None:
    with xr.run("p") as run, pytest.raises(xr.DecorationError, match="cannot decorate"):
        @run.stage("s")
        def step() -> None: ...


def test_xr_stage_decorates_built_in_types_too(lake: Callable[[], xr.Lake]) -> None:
    @xr.stage("keep", type="filtering", passed="ok")
    def keep(items: Annotated[list[Item], xr.Candidates()], limit: int) -> list[Item]:
        return [{**p, "ok": p["price"] < limit} for p in items]

    keep(PRODUCTS, limit=25)
    assert lake().sql("select type, n_out from stages").to_dicts() == [
        {"type": "filtering", "n_out": 3}]


# --- stage results checked at decoration ---------------------------------------------------


def test_a_result_helper_of_another_stage_type_is_rejected_at_decoration() -> None:
    def scores(items: list[Item]) -> list[xr.Filtered[Item]]:
        return []

    message = _decoration_error(xr.scoring_stage("s"), scores)
    assert "a scoring stage returns xr.Filtered, the result of filtering stages" in message
    assert "return xr.Scored(item, ...)" in message

    def keeps(items: list[Item]) -> Iterator[xr.Scored[Item]]:
        yield from ()

    assert "returns xr.Scored" in _decoration_error(xr.filtering_stage("f"), keeps)

    register_judge()

    def judges(items: list[Item]) -> tuple[xr.Generated[Item], ...]:
        return ()

    assert "a llm_judge stage returns xr.Generated" in _decoration_error(
        xr.stage("j", type="llm_judge"), judges)


@pytest.mark.parametrize("annotation", [int, dict[str, Item], str, type(None), Item])
def test_a_list_stage_declared_to_return_no_list_is_rejected_at_decoration(
        annotation: Any) -> None:
    def wrong(items: list[Item]) -> Any:
        return items

    wrong.__annotations__["return"] = annotation
    message = _decoration_error(xr.ranking_stage("r"), wrong)
    assert "a ranking stage returns its candidates as a list, but the return type is" in message


@pytest.mark.parametrize("annotation", [
    list[Item], tuple[Item, ...], list[Item] | None, Any, "list[Undefined]", Annotated[list[Item], 1],
])
def test_list_like_or_unknown_return_types_are_accepted(annotation: Any) -> None:
    def fine(items: list[Item]) -> Any:
        return items

    fine.__annotations__["return"] = annotation
    xr.ranking_stage("r")(fine)


def test_generators_may_declare_any_iterator() -> None:
    @xr.filtering_stage("g", passed="ok")
    def gen(items: list[Item]) -> Iterator[Item]:
        yield from items

    assert list(gen([{"id": 1, "ok": True}])) == [{"id": 1, "ok": True}]


# --- the shipped example -------------------------------------------------------------------


@pytest.mark.slow
def test_the_llm_judge_example_records_and_queries_its_lake(tmp_path: Path) -> None:
    root = tmp_path / "judge-lake"
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "llm_judge.py"),
                           "--root", str(root), "--runs", "12"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert f"recorded 12 runs of product_qa into {root}" in proc.stdout
    assert "judge stages that rejected more than a quarter" in proc.stdout
    assert "reject" in proc.stdout and "nothing in the title matches" in proc.stdout
    db = xr.Lake(str(root))
    judge = db.sql("select * from stages where type = 'llm_judge'")
    assert judge.height == 12 and judge["validation_error"].null_count() == 12
    metrics = judge["metrics"].to_list()
    assert all(set(m) >= {"reject_share", "confidence.mean"} for m in metrics)
    assert db.find({"stage": {"type": "llm_judge", "$metrics.reject_share": {"$gte": 0}}}
                   ).height == 12
