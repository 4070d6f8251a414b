"""Metric plugins: registered by decorator, function or entry point; run on the writer thread over
every candidate; their numbers queryable; a faulty plugin isolated, logged once and counted."""

from __future__ import annotations

import importlib.metadata
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import pyarrow as pa
import pytest

import xray_lake as xr
from xray_lake.query import stage as stage_col
from xray_lake.records import plugin_registry as registry
from xray_lake.testing import capture_records

Item = dict[str, Any]
PRODUCTS = [{"id": f"p{i}", "price": float(10 * i)} for i in range(10)]


pytestmark = pytest.mark.usefixtures("plugin_registry")


@xr.filtering_stage("price-filter", passed="ok", reason_label="why")
def price_filter(items: Annotated[list[Item], xr.Candidates()]) -> list[Item]:
    return [{**p, "ok": p["price"] < 50, "why": None if p["price"] < 50 else "too_expensive"}
            for p in items]


def stages(lake: Callable[[], xr.Lake]) -> list[dict[str, Any]]:
    return lake().sql("select name, type, metrics, validation_error, n_candidates_stored "
                      "from stages order by started_at, seq").to_dicts()


def test_a_plugin_metric_is_stored_and_queryable_in_find_and_the_builder(
        lake: Callable[[], xr.Lake]) -> None:
    @xr.metric("filtering", name="price_p90_of_failed", fields=["price"])
    def price_p90(candidates: pl.DataFrame, stage: Mapping[str, Any]) -> float | None:
        return candidates.filter(~pl.col("passed"))["price"].quantile(0.9)

    price_filter(PRODUCTS)
    db = lake()
    (row,) = stages(lake)
    assert row["metrics"] == {"price_p90_of_failed": 90.0}
    found = db.find({"stage": {"$metrics.price_p90_of_failed": {"$gt": 80}}})
    assert found["name"].to_list() == ["price-filter"]
    assert db.find({"stage": {"$metrics.price_p90_of_failed": {"$gt": 95}}}).is_empty()
    built = db.query().where(stage_col.metrics["price_p90_of_failed"] > 80).to_polars()
    assert built["name"].to_list() == ["price-filter"]


def test_a_plugin_sees_every_candidate_before_sampling_and_the_stage_row() -> None:
    seen: dict[str, Any] = {}

    def inspect_inputs(candidates: pl.DataFrame, stage: Mapping[str, Any]) -> float:
        seen.update(columns=candidates.columns, rows=candidates.height, name=stage["name"],
                    n_in=stage["n_in"], fail_ratio=stage["fail_ratio"], kind=type(candidates))
        return float(candidates.height)

    xr.register_metric("filtering", inspect_inputs, name="rows")

    @xr.filtering_stage("sampled", passed="ok", sample=xr.Sample(max_failed=1))
    def sampled(items: list[Item]) -> list[Item]:
        return [{**p, "ok": p["price"] < 20} for p in items]

    with capture_records() as records:
        sampled(PRODUCTS)
        row = records.stage("sampled")
    assert row["n_candidates_stored"] == 3  # 2 passed + 1 failed kept by sampling
    assert row["metrics"] == {"rows": 10.0}  # the plugin saw all 10
    assert seen["rows"] == 10 and seen["name"] == "sampled" and seen["n_in"] == 10
    assert seen["fail_ratio"] == 0.8  # built-in metrics come first
    assert seen["kind"] is pl.DataFrame
    assert seen["columns"] == list(registry.STANDARD_COLUMNS)


def test_arrow_frames_mappings_and_none(lake: Callable[[], xr.Lake]) -> None:
    @xr.metric("filtering", name="arrow", frame="arrow")
    def arrow(candidates: pa.Table, stage: Mapping[str, Any]) -> dict[str, Any]:
        assert isinstance(candidates, pa.Table)
        return {"n": candidates.num_rows, "passed": pa.compute.sum(candidates["passed"]),
                "skipped": None}

    @xr.metric("filtering")
    def nothing(candidates: pl.DataFrame, stage: Mapping[str, Any]) -> None:
        return None

    price_filter(PRODUCTS)
    assert stages(lake)[0]["metrics"] == {"arrow.n": 10.0, "arrow.passed": 5.0}
    assert xr.stats()["metric_plugins"] == {"failures": {}, "slow": {}}


def test_plugins_run_on_the_writer_thread(lake: Callable[[], xr.Lake]) -> None:
    threads: list[str] = []

    @xr.metric("filtering")
    def where(candidates: pl.DataFrame, stage: Mapping[str, Any]) -> float:
        threads.append(threading.current_thread().name)
        return 1.0

    price_filter(PRODUCTS)
    assert threads == []  # nothing ran on the caller's thread
    lake()
    assert threads == ["xray-lake-writer"]


def test_plugins_only_run_for_their_stage_type(lake: Callable[[], xr.Lake]) -> None:
    @xr.metric("scoring")
    def scoring_only(candidates: pl.DataFrame, stage: Mapping[str, Any]) -> float:
        return 1.0

    @xr.scoring_stage("score")
    def score(items: list[Item]) -> list[xr.Scored[Item]]:
        return [xr.Scored(p, p["price"]) for p in items]

    price_filter(PRODUCTS)
    score(PRODUCTS)
    assert [r["metrics"] for r in stages(lake)] == [None, {"scoring_only": 1.0}]


# --- isolation -----------------------------------------------------------------------------


def test_a_raising_plugin_is_logged_once_counted_and_the_stage_still_recorded(
        lake: Callable[[], xr.Lake], caplog: pytest.LogCaptureFixture) -> None:
    @xr.metric("filtering")
    def broken(candidates: pl.DataFrame, stage: Mapping[str, Any]) -> float:
        raise ZeroDivisionError("no candidates to divide by")

    @xr.metric("filtering")
    def healthy(candidates: pl.DataFrame, stage: Mapping[str, Any]) -> float:
        return 2.0

    with caplog.at_level(logging.WARNING, logger="xray_lake"):
        for _ in range(3):
            assert len(price_filter(PRODUCTS)) == 10  # the user's result, untouched
        rows = stages(lake)
    assert [r["metrics"] for r in rows] == [{"healthy": 2.0}] * 3
    assert xr.stats()["metric_plugins"]["failures"] == {"filtering:broken": 3}
    logged = [r.getMessage() for r in caplog.records if "filtering:broken" in r.getMessage()]
    assert len(logged) == 1
    assert "ZeroDivisionError: no candidates to divide by" in logged[0]
    assert f"{__file__}:" in logged[0]  # where the plugin raised
    assert "recorded without it" in logged[0]


@pytest.mark.parametrize("junk", [
    "0.5", [1.0], float("nan"), math.inf, True, {"a": "x"}, {"": 1.0}, {"a": math.nan},
    {1: 2.0}, object(),
])
def test_a_plugin_returning_junk_is_isolated(junk: object, lake: Callable[[], xr.Lake],
                                             caplog: pytest.LogCaptureFixture) -> None:
    @xr.metric("filtering", name="junk")
    def returns_junk(candidates: pl.DataFrame, stage: Mapping[str, Any]) -> Any:
        return junk

    @xr.metric("filtering", name="fine")
    def fine(candidates: pl.DataFrame, stage: Mapping[str, Any]) -> float:
        return 1.0

    with caplog.at_level(logging.WARNING, logger="xray_lake"):
        price_filter(PRODUCTS)
        price_filter(PRODUCTS)
        rows = stages(lake)
    assert [r["metrics"] for r in rows] == [{"fine": 1.0}, {"fine": 1.0}]
    assert xr.stats()["metric_plugins"]["failures"] == {"filtering:junk": 2}
    logged = [r.getMessage() for r in caplog.records if "filtering:junk" in r.getMessage()]
    assert len(logged) == 1 and "returned" in logged[0]


def test_a_plugin_that_mutates_the_stage_record_fails_alone(lake: Callable[[], xr.Lake]) -> None:
    @xr.metric("filtering")
    def vandal(candidates: pl.DataFrame, stage: Mapping[str, Any]) -> float:
        stage["name"] = "renamed"  # type: ignore[index]
        return 1.0

    price_filter(PRODUCTS)
    (row,) = stages(lake)
    assert row["name"] == "price-filter" and row["metrics"] is None
    assert xr.stats()["metric_plugins"]["failures"] == {"filtering:vandal": 1}


def test_a_plugin_over_its_budget_is_logged_once_and_counted_but_kept(
        lake: Callable[[], xr.Lake], caplog: pytest.LogCaptureFixture) -> None:
    @xr.metric("filtering", budget_ms=1)
    def slow(candidates: pl.DataFrame, stage: Mapping[str, Any]) -> float:
        time.sleep(0.01)
        return 3.0

    with caplog.at_level(logging.WARNING, logger="xray_lake"):
        price_filter(PRODUCTS)
        price_filter(PRODUCTS)
        rows = stages(lake)
    assert [r["metrics"] for r in rows] == [{"slow": 3.0}] * 2
    assert xr.stats()["metric_plugins"] == {"failures": {}, "slow": {"filtering:slow": 2}}
    assert sum("over its budget of 1 ms" in r.getMessage() for r in caplog.records) == 1


def test_plugin_failures_do_not_raise_even_in_strict_mode(lake: Callable[[], xr.Lake]) -> None:
    assert xr.get_settings().strict  # the test suite runs strict: internal errors raise

    @xr.metric("filtering")
    def broken(candidates: pl.DataFrame, stage: Mapping[str, Any]) -> float:
        raise RuntimeError("boom")

    price_filter(PRODUCTS)
    assert stages(lake)[0]["name"] == "price-filter"
    assert xr.stats()["internal_errors"] == {}  # a plugin's fault is not xray-lake's


# --- registration mistakes -----------------------------------------------------------------


def _registration_error(register: Callable[[], object], func: Callable[..., Any]) -> str:
    with pytest.raises(xr.DecorationError) as caught:
        register()
    message = str(caught.value)
    assert func.__qualname__ in message
    assert f"{func.__code__.co_filename}:{func.__code__.co_firstlineno}" in message
    assert "Fix:" in message
    return message


def plugin(candidates: Any, stage: Mapping[str, Any]) -> float:
    return 0.0


def test_a_plugin_for_an_unknown_type_names_the_nearest_one() -> None:
    message = _registration_error(lambda: xr.register_metric("filterin", plugin), plugin)
    assert "unknown stage type 'filterin'" in message and "did you mean 'filtering'?" in message
    assert "xr.register_stage_type" in message


def test_a_plugin_with_the_wrong_arity_is_rejected() -> None:
    def one(candidates: Any) -> float:
        return 0.0

    def three(candidates: Any, stage: Any, extra: int) -> float:
        return 0.0

    def defaults_are_fine(candidates: Any, stage: Any, extra: int = 1) -> float:
        return 0.0

    message = _registration_error(lambda: xr.register_metric("filtering", one), one)  # type: ignore[arg-type]
    assert "called with two arguments (candidates, stage)" in message and "(candidates)" in message
    _registration_error(lambda: xr.register_metric("filtering", three), three)
    xr.register_metric("filtering", defaults_are_fine)


def test_a_coroutine_plugin_is_rejected() -> None:
    async def later(candidates: Any, stage: Any) -> float:
        return 0.0

    assert "not a coroutine" in _registration_error(
        lambda: xr.register_metric("filtering", later), later)


def test_a_duplicate_metric_name_is_rejected_but_the_same_function_may_register_again() -> None:
    def first(candidates: Any, stage: Any) -> float:
        return 1.0

    def second(candidates: Any, stage: Any) -> float:
        return 2.0

    xr.register_metric("filtering", first, name="share")
    xr.register_metric("filtering", first, name="share")  # a module imported twice
    message = _registration_error(
        lambda: xr.register_metric("filtering", second, name="share"), second)
    assert "metric 'share' of stage type 'filtering' is already computed by" in message
    assert first.__qualname__ in message
    xr.register_metric("scoring", second, name="share")  # another type: another namespace


@pytest.mark.parametrize(("options", "expected"), [
    ({"name": "has space"}, "is not a name"),
    ({"fields": "price"}, "not a list of candidate field names"),
    ({"frame": "pandas"}, "neither 'polars' nor 'arrow'"),
    ({"budget_ms": 0}, "not a positive number"),
])
def test_bad_plugin_options_are_rejected(options: dict[str, Any], expected: str) -> None:
    assert expected in _registration_error(
        lambda: xr.register_metric("filtering", plugin, **options), plugin)


def test_the_decorator_returns_the_function_unchanged() -> None:
    def share(candidates: Any, stage: Any) -> float:
        return 0.25

    assert xr.metric("filtering")(share) is share
    assert share(None, {}) == 0.25
    assert [p.name for p in registry.plugins("filtering")] == ["share"]


# --- entry points --------------------------------------------------------------------------


PLUGIN_MODULE = '''
import xray_lake as xr

@xr.metric("filtering", name="packaged")
def packaged(candidates, stage):
    return 7.0

def setup():
    xr.register_metric("scoring", lambda candidates, stage: 8.0, name="from_setup")

def unregistered(candidates, stage):
    return 9.0
'''


def _entry_points(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, module: str,
                  points: list[tuple[str, str]]) -> list[int]:
    """Fake installed distributions: `importlib.metadata.entry_points` lists `points`, which
    load a real module from tmp_path. Returns a list counting the lookups."""
    (tmp_path / f"{module}.py").write_text(PLUGIN_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    calls: list[int] = []
    real = importlib.metadata.entry_points

    def fake(**select: Any) -> Any:
        if select.get("group") != registry.GROUP:
            return real(**select)
        calls.append(1)
        return [importlib.metadata.EntryPoint(name=n, value=v, group=registry.GROUP)
                for n, v in points]

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    registry.restore((registry.snapshot()[0], registry.snapshot()[1], False))
    return calls


def test_entry_points_are_loaded_once_lazily_and_their_plugins_run(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, lake: Callable[[], xr.Lake]) -> None:
    calls = _entry_points(monkeypatch, tmp_path, "xray_test_plugins_a", [
        ("module", "xray_test_plugins_a"),
        ("setup", "xray_test_plugins_a:setup"),
    ])
    assert calls == []  # nothing loads at registration or import

    @xr.scoring_stage("score")
    def score(items: list[Item]) -> list[xr.Scored[Item]]:
        return [xr.Scored(p, 1.0) for p in items]

    price_filter(PRODUCTS)
    score(PRODUCTS)
    price_filter(PRODUCTS)
    assert [r["metrics"] for r in stages(lake)] == [
        {"packaged": 7.0}, {"from_setup": 8.0}, {"packaged": 7.0}]
    assert calls == [1]  # listed once, on the writer thread, when the first stage was built


def test_a_broken_entry_point_is_reported_counted_and_the_others_still_load(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, lake: Callable[[], xr.Lake],
        caplog: pytest.LogCaptureFixture) -> None:
    _entry_points(monkeypatch, tmp_path, "xray_test_plugins_b", [
        ("missing", "xray_no_such_module_anywhere"),
        ("unregistered", "xray_test_plugins_b:unregistered"),
        ("good", "xray_test_plugins_b"),
    ])
    with caplog.at_level(logging.WARNING, logger="xray_lake"):
        problems = registry.load_entry_points()
        assert registry.load_entry_points() == problems  # once: the second call is free
    assert [name for name, _ in problems] == ["missing", "unregistered"]
    assert "ModuleNotFoundError" in problems[0][1]
    assert "neither a registered metric plugin (@xr.metric) nor a setup()" in problems[1][1]
    assert xr.stats()["metric_plugins"]["failures"] == {"entry-point:missing": 1,
                                                        "entry-point:unregistered": 1}
    assert sum("entry point missing failed to load" in r.getMessage()
               for r in caplog.records) == 1
    price_filter(PRODUCTS)
    assert stages(lake)[0]["metrics"] == {"packaged": 7.0}
