"""The framework examples run as users would run them: the LangChain pipeline instrumented
with decorators, and the OpenInference-instrumented one sent through `xray-lake collect`."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import xray_lake as xr

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
Lake = Callable[[], xr.Lake]


def _example(name: str, framework: str) -> Any:
    """Import examples/<name>.py; skip (saying why) only where its framework, part of [dev],
    could not be installed."""
    pytest.importorskip(framework, reason=f"{framework} is not installed")
    sys.path.insert(0, str(EXAMPLES))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(EXAMPLES))


def _first_run_stages(name: str, framework: str, root: str,
                      lake: Lake) -> tuple[xr.Lake, list[dict[str, Any]]]:
    """Run examples/<name>.py for three runs into `root`: the lake, and its first run's stages
    in order."""
    run_ids = _example(name, framework).main(["--root", root, "--runs", "3"])
    db = lake()
    stages = db.sql("select name, type, n_in, n_out, score_max, validation_error from stages "
                    "where run_id = ? order by seq", [run_ids[0]]).to_dicts()
    return db, stages


@pytest.mark.slow  # imports Haystack: several seconds on a shared 2-core machine
def test_the_haystack_decorator_example_records_its_funnel(isolated_lake: str,
                                                           lake: Lake) -> None:
    db, stages = _first_run_stages("haystack_pipeline", "haystack", isolated_lake, lake)
    assert [(s["name"], s["type"]) for s in stages] == [
        ("bm25", "retrieval"), ("length-filter", "filtering"), ("keyword-score", "scoring"),
        ("top-5", "ranking")]
    assert all(s["validation_error"] is None for s in stages)
    bm25, length, scorer, top = stages
    assert bm25["score_max"] is not None and bm25["n_out"] == length["n_in"]
    assert scorer["n_in"] == length["n_out"] and top["n_out"] == 5
    reasons = set(db.sql("select reason_label from candidates where stage_name = "
                         "'length-filter' and not passed")["reason_label"].to_list())
    assert reasons and reasons <= {"too_short", "too_long"}
    assert db.sql("select count(*) n from candidates where stage_name = 'keyword-score' and "
                  "score is null")["n"][0] == 0


@pytest.mark.slow  # imports LangChain: about 3 s on a shared 2-core machine
def test_the_langchain_decorator_example_records_its_funnel(isolated_lake: str,
                                                            lake: Lake) -> None:
    db, stages = _first_run_stages("langchain_pipeline", "langchain_core", isolated_lake, lake)
    assert [(s["name"], s["type"]) for s in stages] == [
        ("vector-search", "retrieval"), ("buyable", "filtering"), ("rerank", "ranking")]
    assert all(s["validation_error"] is None for s in stages)
    assert stages[0]["n_out"] == 20 and stages[0]["score_max"] is not None  # metadata.score
    assert stages[1]["n_in"] == 20 and stages[2]["n_out"] == stages[1]["n_out"]
    reasons = db.sql("select distinct reason_label from candidates where stage_name = 'buyable' "
                     "and not passed")["reason_label"].to_list()
    assert set(reasons) <= {"out_of_stock", "over_budget"} and reasons
    scores = db.sql("select score from candidates where stage_name = 'vector-search'")["score"]
    assert scores.null_count() == 0


@pytest.mark.slow  # a subprocess importing LangChain and the OpenTelemetry SDK
def test_the_openinference_example_reaches_the_lake_through_collect(lake: Lake) -> None:
    pytest.importorskip("openinference.instrumentation.langchain",
                        reason="openinference-instrumentation-langchain is not installed")
    from xray_lake.otlp import collect
    from xray_lake.otlp.buffer import Timing

    running = collect.start("127.0.0.1", 0, timing=Timing(idle_s=0.2, max_wait_s=30))
    try:
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / "openinference_langchain.py"), "--endpoint",
             running.url, "--runs", "3"], capture_output=True, text=True, timeout=300,
            check=False)
        assert done.returncode == 0, done.stderr
    finally:
        assert running.close()
    assert running.server.stats().get("spans_rejected", 0) == 0
    db = lake()
    runs = db.sql("select run_id, n_stages, status from runs").to_dicts()
    assert len(runs) == 3 and all(r["status"] == "success" for r in runs)
    run_id = runs[0]["run_id"]
    stages = db.sql("select name, type, n_in, n_out from stages where run_id = ? order by seq",
                    [run_id]).to_dicts()
    by_type = {s["type"]: s for s in stages}
    assert by_type["retrieval"]["n_out"] == 20
    assert (by_type["ranking"]["name"], by_type["ranking"]["n_in"],
            by_type["ranking"]["n_out"]) == ("price-rerank", 20, 10)
    assert any(s["name"] == "FakeListLLM" for s in stages)
    # LangChain's document ids reach both stages, so a candidate's journey crosses them
    ids = db.sql("select stage_type, candidate_id from candidates where run_id = ?",
                 [run_id]).to_dicts()
    retrieved = {r["candidate_id"] for r in ids if r["stage_type"] == "retrieval"}
    reranked = {r["candidate_id"] for r in ids if r["stage_type"] == "ranking"}
    assert retrieved == reranked and all(i.startswith("p") for i in retrieved)
    dropped = db.sql("select candidate_id from candidates where run_id = ? and stage_type = "
                     "'ranking' and out_position is null limit 1", [run_id])["candidate_id"][0]
    assert db.journey(run_id, dropped).verdict.startswith("cut at price-rerank")
