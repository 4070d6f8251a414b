"""Read-only queries by default: user SQL reads the lake and nothing else (SPEC §9, docs/security.md)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

import xray_lake as xr
from xray_lake.errors import QueryError


@pytest.fixture
def root(isolated_lake: str) -> str:
    for i in range(3):
        with xr.run("shop", run_id=f"run-{i}") as run, \
                run.stage("filter", type="filtering", passed="ok", reason_label="why") as st:
            items = [{"id": f"c{j}", "ok": j < 2, "why": "far"} for j in range(4)]
            st.input(items)
            st.output(items)
    assert xr.flush(10)
    return isolated_lake


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file beside the lake, outside its root."""
    path = tmp_path / "secret.csv"
    path.write_text("name,password\nroot,hunter2\n", encoding="utf-8")
    return path


def escapes(root: str, secret: Path, out: Path) -> dict[str, str]:
    """SQL that reads or writes outside the lake, or changes the connection: all refused."""
    return {
        "read_csv": f"select * from read_csv('{secret}')",
        "read_csv_passwd": "select * from read_csv('/etc/passwd', sep = ':')",
        "read_text": f"select content from read_text('{secret}')",
        "read_blob": f"select content from read_blob('{secret}')",
        "dotdot": f"select content from read_text('{root}/../{secret.name}')",
        "glob": "select * from glob('/*')",
        "glob_beside": f"select * from glob('{secret.parent}/*')",
        "url": "select * from read_parquet('http://127.0.0.1:9/x.parquet')",
        "s3_url": "select * from read_parquet('s3://bucket/x.parquet')",
        "copy_out": f"copy (select * from runs) to '{out}'",
        "copy_in_root": f"copy (select * from runs) to '{root}/runs/x.csv'",
        "attach": f"attach '{out}.db' as other",
        "attach_memory": "attach ':memory:' as other",
        "install": "install httpfs",
        "load": "load httpfs",
        "set": "set enable_external_access = true",
        "reset": "reset lock_configuration",
        "pragma_set": "pragma threads = 1",
        "pragma": "pragma version",
        "call": "call pragma_version()",
        "checkpoint": "checkpoint",
        "export": f"export database '{out}'",
        "create_view": "create or replace view runs as select 1 as run_id",
        "two_statements": "select 1; select 2",
        "select_then_copy": f"select 1; copy (select 1) to '{out}'",
        "explain_analyze_copy": f"explain analyze copy (select 1) to '{out}'",
        "query_function_copy": f"select * from query('copy (select 1) to ''{out}''')",
    }


ESCAPES = list(escapes("r", Path("s"), Path("o")))


@pytest.mark.parametrize("name", ESCAPES)
def test_lake_sql_refuses_sql_that_leaves_the_lake(root: str, secret: Path, tmp_path: Path,
                                                   name: str) -> None:
    out = tmp_path / "out.csv"
    with xr.Lake(root) as lake:
        with pytest.raises(QueryError) as caught:
            lake.sql(escapes(root, secret, out)[name])
        assert "hunter2" not in str(caught.value)
        # the lake is still answering, with its own views
        assert lake.sql("select count(*) from runs").item() == 3
    assert not out.exists() and not Path(f"{out}.db").exists()
    assert not (Path(root) / "runs" / "x.csv").exists()


def test_the_connection_of_a_read_only_lake_cannot_be_reconfigured(root: str,
                                                                    secret: Path) -> None:
    with xr.Lake(root) as lake:
        for sql in ("SET enable_external_access = true", "SET allowed_directories = ['/']",
                    "SET lock_configuration = false"):
            with pytest.raises(duckdb.Error):
                lake.connection.execute(sql)
        with pytest.raises(duckdb.Error):
            lake.connection.execute(f"select * from read_csv('{secret}')")


@pytest.mark.parametrize("sql", [
    "select count(*) as n from candidates",
    "with f as (select * from stages) select count(*) as n from f",
    "from runs select count(*) as n",
    "describe candidates",
    "show tables",
    "summarize runs",
    "explain select * from runs",
    "explain analyze select count(*) from stages",
    "select count(*) as n from runs;",
    "-- a comment\nselect count(*) as n from runs",
])
def test_read_only_lake_answers_queries(root: str, sql: str) -> None:
    with xr.Lake(root) as lake:
        assert lake.sql(sql).height >= 1


def test_read_only_lake_reads_its_own_files_by_path(root: str) -> None:
    with xr.Lake(root) as lake:
        found = lake.sql(f"select count(*) from read_parquet('{root}/runs/*/*/*.parquet')")
        assert found.item() == 3


def test_json_language_builder_journey_and_funnel_work_read_only(root: str) -> None:
    with xr.Lake(root) as lake:
        assert lake.read_only
        assert lake.find({"stage": {"type": "filtering"}}).height == 3
        assert lake.query().to_polars().height >= 1
        assert "dropped" in str(lake.journey("run-0", "c3")).lower()
        assert lake.funnel("run-0").height == 1
        for _ in range(4):  # past the in-memory copies' threshold (they ATTACH a database)
            assert lake.sql("select count(*) from stages").item() == 3


def test_read_only_false_restores_the_full_duckdb(root: str, secret: Path,
                                                 tmp_path: Path) -> None:
    out = tmp_path / "copy.csv"
    with xr.Lake(root, read_only=False) as lake:
        assert lake.sql(f"select password from read_csv('{secret}')").item() == "hunter2"
        lake.sql(f"copy (select run_id from runs) to '{out}'")
        assert lake.sql("select 1; select 2 as two").item() == 2
    assert out.exists()


def test_relative_root_is_readable_and_still_confined(root: str, secret: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(root).parent)
    with xr.Lake(os.path.basename(root)) as lake:
        assert lake.sql("select count(*) from runs").item() == 3
        with pytest.raises(QueryError):
            lake.sql(f"select * from read_csv('{secret.name}')")


def test_cli_query_refuses_escapes_with_a_usage_error(root: str, secret: Path,
                                                      tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from xray_lake.cli.app import app

    out = tmp_path / "x.csv"
    for sql in (f"select * from read_csv('{secret}')", f"copy (select 1) to '{out}'",
                "select 1; select 2", f"attach '{out}.db'"):
        result = CliRunner().invoke(app, ["query", sql, "--root", root])
        assert result.exit_code == 2, (sql, result.stdout, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
        assert "--unsafe-sql" in result.stderr
        assert "hunter2" not in result.stdout + result.stderr
    assert not out.exists()


def test_cli_query_unsafe_sql_opts_out(root: str, secret: Path) -> None:
    from typer.testing import CliRunner

    from xray_lake.cli.app import app

    result = CliRunner().invoke(app, ["query", f"select * from read_csv('{secret}')",
                                      "--unsafe-sql", "--format", "csv", "--root", root])
    assert result.exit_code == 0, result.stderr
    assert "hunter2" in result.stdout


def _wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_ctrl_c_stops_a_long_cli_query(root: str, tmp_path: Path) -> None:
    # A query that runs for minutes; SIGINT must end the command within seconds.
    sql = "select sum(hash(i)) from range(1000000000000) t(i)"
    started = tmp_path / "started"
    code = (f"import pathlib, sys; pathlib.Path({str(started)!r}).touch(); "
            "from xray_lake.cli.app import main; main()")
    proc = subprocess.Popen([sys.executable, "-c", code, "query", sql, "--root", root],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(started.exists, 30)
        time.sleep(2.0)  # imports and the lake's views, then the query itself
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode not in (0, None)
    assert "aborted" in err and "Traceback" not in err
