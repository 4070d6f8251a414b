"""`benchmarks/run.py --scale smoke` end to end: every workload reported and sane.

Result sanity only (no timing assertions: the machine is shared): row counts equal across
engines, every alternative's answers equal to xray-lake's, positive timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# Runs benchmarks/run.py in subprocesses, the whole suite once at the smoke scale: ~40 s.
pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
RUN = BENCH / "run.py"
COMPARED_QUESTIONS = ("1", "3", "4", "7")
# Questions whose answer does not move with the clock between the two phases of the queries workload.
STABLE_QUESTIONS = ("1", "1b", "2", "4", "6", "7", "8", "8b")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("XRAY_LAKE_")}


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(RUN), *args], capture_output=True, text=True,
                          timeout=timeout, env=_env(), check=False)


def _postgres_present() -> bool:
    sys.path.insert(0, str(BENCH))
    try:
        from alternatives_postgres import PostgresUnavailable, find_bindir

        try:
            find_bindir()
        except PostgresUnavailable:
            return False
        import psycopg  # noqa: F401
    except ImportError:
        return False
    finally:
        sys.path.remove(str(BENCH))
    return True


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "smoke.json"
    done = _run("--scale", "smoke", "--json", str(out), "--root", str(tmp / "work"),
                "--no-results-md", timeout=1800)
    assert done.returncode == 0, done.stderr[-4000:]
    assert not (tmp / "work").exists() or not any((tmp / "work").iterdir()), "not cleaned up"
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def test_every_workload_is_reported(smoke: dict[str, Any]) -> None:
    assert set(smoke["workloads"]) == {"hot_path", "ingest", "queries", "alternatives", "memory"}
    assert smoke["scale"] == "smoke"
    assert smoke["seconds"] > 0
    assert smoke["versions"]["xray_lake"] and smoke["machine"]["cores"]


def test_hot_path_times_are_positive(smoke: dict[str, Any]) -> None:
    hot = smoke["workloads"]["hot_path"]
    assert hot["uninstrumented_us"] > 0 and hot["orjson_dumps_us"] > 0
    assert hot["total_overhead_cpu_us"] > 0 and hot["end_to_end_candidate_rows_per_s"] > 0


def test_ingest_compares_the_same_rows(smoke: dict[str, Any]) -> None:
    ingest = smoke["workloads"]["ingest"]
    sdk, direct = ingest["sdk"], ingest["direct"]
    assert sdk["candidate_rows"] > 0 and sdk["records_dropped"] == 0
    assert direct["candidate_rows"] == sdk["candidate_rows"]  # every partition at this scale
    assert sdk["rows_per_s"] > 0 and sdk["bytes_per_candidate_row"] > 0
    assert direct["encoded_rows_per_s"] > 0 and direct["dicts_rows_per_s"] > 0
    assert ingest["sdk_pct_of_encoded"] > 0 and ingest["sdk_pct_of_dicts"] > 0


def test_queries_answer_the_same_before_and_after_compaction(smoke: dict[str, Any]) -> None:
    queries = smoke["workloads"]["queries"]
    before = {t["key"]: t for t in queries["before"]}
    after = {t["key"]: t for t in queries["after"]}
    assert set(before) == set(after) and set(STABLE_QUESTIONS) <= set(before)
    for key in STABLE_QUESTIONS:
        assert before[key]["rows"] == after[key]["rows"], key
    assert before["1"]["rows"] > 0 and before["4"]["rows"] > 0
    for t in (*before.values(), *after.values()):
        assert t["cold_ms"] > 0 and t["warm_ms"] > 0
    c = queries["compaction"]
    assert c["files_out"] < c["files_in"] and not c["errors"]
    assert 0 < c["rows"] <= sum(queries["lake_rows"].values())


def test_alternatives_hold_the_same_rows_and_give_the_same_answers(
        smoke: dict[str, Any]) -> None:
    alts = smoke["workloads"]["alternatives"]
    engines = alts["engines"]
    reference = engines["xray-lake"]["counts"]
    assert reference["candidates"] > 0
    assert alts["export"]["candidates"] == reference["candidates"]
    available = [name for name, e in engines.items() if e["available"]]
    assert {"xray-lake", "xray-lake (compacted)", "jsonl_duckdb", "sqlite"} <= set(available)
    for name in available:
        e = engines[name]
        assert e["counts"] == reference, name
        assert e["bytes"] > 0, name
        for key in COMPARED_QUESTIONS:
            q = e["questions"][key]
            assert q["first_ms"] > 0 and q["median_ms"] > 0, (name, key)
            assert q["rows"] > 0, (name, key)
            if name != "xray-lake":
                assert q["matches_xray_lake"], (name, key)


def test_postgres_ran_here_or_says_why_not(smoke: dict[str, Any]) -> None:
    alts = smoke["workloads"]["alternatives"]
    pg = alts["engines"]["postgres"]
    if _postgres_present():
        assert pg["available"], pg.get("notice")
        assert pg["load"]["bytes_indexes"] > 0
        assert pg["q1_jsonpath"]["matches_xray_lake"] and pg["q1_jsonpath"]["median_ms"] > 0
        assert "xray-lake (compacted)" in alts["headline"]
        assert alts["headline"]["xray-lake (compacted)"]["q1_speedup_vs_postgres"] > 0
    else:
        assert not pg["available"]
        assert "PostgreSQL" in pg["notice"] or "psycopg" in pg["notice"]
        assert "notice" in alts["headline"]


def test_memory_burst_is_measured_and_waits_instead_of_dropping(smoke: dict[str, Any]) -> None:
    m = smoke["workloads"]["memory"]
    assert m["offered_payload_bytes"] >= 10 * m["bound_bytes"]
    assert m["peak_rss_bytes"] >= m["baseline_rss_bytes"] > 0
    assert m["records_dropped"] == 0  # the burst is far faster than the writer: it waits
    assert m["candidate_rows_written"] == m["candidate_rows_recorded"] > 0
    assert m["peak_writer_buffered_bytes"] > 0


def test_missing_postgres_binaries_give_a_clear_notice(monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import alternatives_postgres
    finally:
        sys.path.remove(str(BENCH))
    monkeypatch.setattr(alternatives_postgres.shutil, "which", lambda name: None)
    monkeypatch.setattr(alternatives_postgres.glob, "glob", lambda pattern: [])
    with pytest.raises(alternatives_postgres.PostgresUnavailable, match="PostgreSQL server binaries"):
        alternatives_postgres.find_bindir()


@pytest.mark.parametrize(("args", "message"), [
    (["--scale", "huge", "--json", "x.json"], "invalid choice: 'huge'"),
    (["--scale", "small"], "--json"),
    (["--scale", "small", "--json", "/no/such/folder/x.json"], "does not exist"),
    (["--scale", "small", "--json", "x.json", "--workloads", "hot_path,w9"], "unknown w9"),
])
def test_bad_arguments_are_one_clear_error(args: list[str], message: str) -> None:
    done = _run(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_root_that_is_not_empty_is_refused(tmp_path: Path) -> None:
    (tmp_path / "something").write_text("x")
    done = _run("--scale", "small", "--json", str(tmp_path / "x.json"), "--root", str(tmp_path))
    assert done.returncode == 2 and "is not empty" in done.stderr
    assert (tmp_path / "something").exists()
