"""`xray-lake ui` without a browser: the command, its address rules, and pages over HTTP."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tests._ui import serving
from xray_lake.cli.app import app
from xray_lake.loopback import is_loopback
from xray_lake.records.schema import RUNS, SCHEMA_VERSION, STAGES
from xray_lake.storage.layout import data_file_name, partition_dir

pytest.importorskip("starlette")


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _write(root: str, table: str, schema: pa.Schema, rows: list[dict[str, object]]) -> None:
    folder = partition_dir(root, table, "checkout", "2026-05-01")
    os.makedirs(folder, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema),
                   os.path.join(folder, data_file_name("uitest", 0, SCHEMA_VERSION)))


@pytest.fixture
def incomplete_lake(tmp_path: Path) -> Iterator[str]:
    """A lake of one run that lost one of its two stage records (status 'incomplete')."""
    import datetime as dt

    root = str(tmp_path / "lake")
    when = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)
    _write(root, "runs", RUNS, [{
        "run_id": "r-1", "started_at": when, "finished_at": when, "duration_ms": 5.0,
        "status": "incomplete", "n_stages": 2, "input_json": '{"q": "red shoes"}',
        "n_stages_shed": 1, "n_candidates_shed": 12}])
    _write(root, "stages", STAGES, [{
        "run_id": "r-1", "stage_id": "s-1", "name": "price-filter", "type": "filtering",
        "seq": 1, "started_at": when, "duration_ms": 2.0, "status": "success", "n_in": 20,
        "n_out": 8, "fail_ratio": 0.6, "reason_counts": [("price_too_high", 12)]}])
    yield root


@pytest.fixture
def many_runs(tmp_path: Path) -> str:
    """120 runs, one a minute, each with a different duration."""
    import datetime as dt

    root = str(tmp_path / "lake")
    start = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    _write(root, "runs", RUNS, [{
        "run_id": f"r-{i:03d}", "started_at": start + dt.timedelta(minutes=i),
        "duration_ms": float((i * 37) % 120), "status": "failure" if i % 10 == 0 else "success",
        "n_stages": 1} for i in range(120)])
    return root


def test_the_runs_list_pages_and_sorts_in_sql(many_runs: str) -> None:
    from xray_lake.query.lake import Lake
    from xray_lake.ui.queries import PAGE_SIZE, RunsFilter, runs_page

    with Lake(many_runs) as lake:
        pages = [runs_page(lake, RunsFilter(page=n)) for n in (1, 2, 3, 4)]
        assert [p.total for p in pages] == [120] * 4 and pages[0].pages == 3
        assert [len(p.rows) for p in pages] == [PAGE_SIZE, PAGE_SIZE, 20, 0]
        ids = [r["run_id"] for p in pages for r in p.rows]
        assert ids == [f"r-{i:03d}" for i in reversed(range(120))]  # newest first, no overlap
        by_duration = runs_page(lake, RunsFilter(sort="duration_ms", descending=False))
        durations = [r["duration_ms"] for r in by_duration.rows]
        assert durations == sorted(durations) and durations[0] == 0.0
        failed = runs_page(lake, RunsFilter(status="failure", until="2026-05-01T01:00:00"))
        assert [r["run_id"] for r in failed.rows] == [f"r-{i:03d}" for i in (50, 40, 30, 20,
                                                                              10, 0)]
        typed = runs_page(lake, RunsFilter(query='{"pipeline": {"$durationMs": {"$gte": 118}}}',
                                           status="success"))
        assert {r["duration_ms"] for r in typed.rows} == {118.0, 119.0}


@pytest.mark.slow  # the first server of the module: imports the web stack and DuckDB
def test_an_incomplete_run_is_marked_on_its_page_and_in_the_list(incomplete_lake: str) -> None:
    with serving(incomplete_lake) as url:
        status, body = _get(f"{url}/run?run=r-1")
        assert status == 200
        assert 'id="incomplete"' in body
        assert "shed 1 stage record(s) and 12 candidate row(s)" in body
        assert "price_too_high 12" in body  # the funnel's top reasons
        status, listed = _get(f"{url}/runs?status=incomplete")
        assert status == 200 and "r-1" in listed


def test_unknown_runs_and_bad_filters_are_pages_not_tracebacks(incomplete_lake: str) -> None:
    with serving(incomplete_lake) as url:
        assert _get(f"{url}/run?run=nope")[0] == 404
        assert _get(f"{url}/stage?run=r-1&stage=nope")[0] == 404
        status, body = _get(f"{url}/runs?q=%7Bnot%20json")
        assert status == 400 and "not valid JSON" in body
        status, body = _get(f"{url}/runs?q=" + urllib.request.quote(
            json.dumps({"stage": {"colour": "red"}})))
        assert status == 400 and "colour" in body
        assert _get(f"{url}/runs?sort=payload")[0] == 400
        assert _get(f"{url}/runs?page=0")[0] == 400


def test_a_loopback_server_answers_only_loopback_host_names(incomplete_lake: str) -> None:
    """A page elsewhere cannot reach the lake through a DNS name pointed at 127.0.0.1."""
    with serving(incomplete_lake) as url:
        port = int(url.rsplit(":", 1)[1])
        for host, expected in (("evil.example", 400), (f"localhost:{port}", 200),
                               (f"127.0.0.1:{port}", 200)):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/runs", headers={"Host": host})
            assert conn.getresponse().status == expected, host
            conn.close()


def test_loopback_addresses() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.0.2.1", "example.com"]))


def test_ui_without_the_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.setattr("xray_lake.cli.ui.missing_packages", lambda: ["starlette", "uvicorn"])
    result = CliRunner().invoke(app, ["ui", "--root", str(tmp_path)])
    assert result.exit_code == 1
    assert "pip install 'xray-lake[ui]'" in result.stderr
    assert "starlette, uvicorn" in result.stderr


def test_ui_refuses_a_root_that_does_not_exist(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["ui", "--root", str(tmp_path / "none")])
    assert result.exit_code == 1 and "no lake at" in result.stderr


def _start(root: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "xray_lake", "ui", "--root", root,
                             "--port", "0", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.terminate()
    try:
        return proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


@pytest.mark.slow
def test_the_command_prints_its_url_and_serves_it(incomplete_lake: str) -> None:
    proc = _start(incomplete_lake)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "read-only on http://127.0.0.1:" in line, line
        url = line.rsplit(" ", 1)[1].strip()
        status, body = _get(f"{url}runs")
        assert status == 200 and "r-1" in body
    finally:
        _, err = _stop(proc)
    assert "warning" not in err


@pytest.mark.slow
def test_the_command_warns_plainly_when_it_listens_beyond_loopback(incomplete_lake: str) -> None:
    proc = _start(incomplete_lake, "--host", "0.0.0.0")
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        port = line.rsplit(":", 1)[1].strip().rstrip("/")
        assert _get(f"http://127.0.0.1:{port}/runs")[0] == 200
    finally:
        _, err = _stop(proc)
    assert "warning: listening on 0.0.0.0, not on loopback" in err
    assert "can read the whole lake" in err


def test_ui_help_imports_no_web_stack() -> None:
    code = ("import contextlib, io, json, sys\n"
            "from xray_lake.cli.app import main\n"
            "for argv in (['--help'], ['ui', '--help']):\n"
            "    sys.argv = ['xray-lake', *argv]\n"
            "    with contextlib.redirect_stdout(io.StringIO()):\n"
            "        try:\n"
            "            main()\n"
            "        except SystemExit:\n"
            "            pass\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    loaded = {name.partition(".")[0] for name in json.loads(done.stdout)}
    assert loaded.isdisjoint({"starlette", "jinja2", "uvicorn", "duckdb", "polars"}), loaded
