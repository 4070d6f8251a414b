"""The background writer: when it flushes, what flush() promises, threads, forks and process exit."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

import xray_lake as xr
from xray_lake.writer import process


def record_runs(n: int, label: str = "p", candidates: int = 10, tag: str = "") -> None:
    for i in range(n):
        run_id = f"{label}-{os.getpid()}-{tag}-{i}"
        with xr.run(label, run_id=run_id) as run, \
                run.stage("f", type="filtering", passed="ok") as st:
            items = [{"id": j, "ok": j % 2 == 0} for j in range(candidates)]
            st.input(items)
            st.output(items)


def count(root: Path, table: str) -> int:
    files = list(root.glob(f"{table}/*/*/*.parquet"))
    if not files:
        return 0
    return int(duckdb.sql(
        f"select count(*) from read_parquet('{root}/{table}/*/*/*.parquet', hive_partitioning=true)"
    ).fetchall()[0][0])


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "lake"
    xr.configure(root=str(path), strict=True, fsync=False)
    return path


def test_flush_returns_true_once_every_record_is_in_the_lake(root: Path) -> None:
    record_runs(3)
    assert xr.flush(10) is True
    assert count(root, "runs") == 3
    assert count(root, "stages") == 3
    assert count(root, "candidates") == 30


def test_flush_with_nothing_recorded_is_true(root: Path) -> None:
    assert xr.flush(1) is True


def test_writer_flushes_by_candidate_rows_without_flush_call(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    xr.configure(root=str(root), fsync=False, flush_rows=50, flush_interval_s=3600,
                 drain_interval_s=0.05)
    record_runs(10, candidates=10)  # 100 candidate rows > 50
    deadline = time.monotonic() + 10
    while count(root, "candidates") < 50 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert count(root, "candidates") >= 50


def test_writer_flushes_by_interval_without_flush_call(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    xr.configure(root=str(root), fsync=False, flush_interval_s=0.2, drain_interval_s=0.05)
    record_runs(2)
    deadline = time.monotonic() + 10
    while count(root, "runs") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert count(root, "runs") == 2


@pytest.mark.slow
def test_process_exiting_without_flush_still_lands_its_records(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    script = textwrap.dedent(f"""
        import xray_lake as xr
        xr.configure(root={str(root)!r}, flush_interval_s=3600)
        for i in range(5):
            with xr.run("exit", run_id=f"r{{i}}") as run:
                with run.stage("s", type="retrieval") as st:
                    st.output([{{"id": j}} for j in range(7)])
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert count(root, "runs") == 5
    assert count(root, "candidates") == 35


def test_four_threads_land_every_row(root: Path) -> None:
    threads = [threading.Thread(target=record_runs, args=(25, "p", 10, f"t{k}")) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert xr.flush(30)
    assert count(root, "runs") == 100
    assert count(root, "candidates") == 1000
    ids = duckdb.sql(f"select count(distinct run_id) from read_parquet('{root}/runs/*/*/*.parquet')")
    assert ids.fetchall()[0][0] == 100


def _child_records(n: int) -> None:
    record_runs(n, label="child")
    assert xr.flush(30)


@pytest.mark.skipif(sys.platform == "win32", reason="fork start method")
def test_forked_child_lands_its_rows_and_never_the_parents(root: Path) -> None:
    record_runs(5, label="parent")  # buffered in the parent when the child is forked
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_child_records, args=(7,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert xr.flush(30)
    runs = pl.read_parquet(str(root / "runs" / "*" / "*" / "*.parquet"), hive_partitioning=True)
    assert runs.group_by("label").len().sort("label").to_dicts() == [
        {"label": "child", "len": 7}, {"label": "parent", "len": 5}]


def test_unwritable_root_spools_and_replays_exactly_once_when_the_lake_is_back(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the lake folder should be")
    lake = blocker / "lake"
    xr.configure(root=str(lake), spool_dir=str(tmp_path / "spool"), fsync=False)
    record_runs(2)  # must not raise into the pipeline
    assert xr.flush(10) is True  # durable: in the spool
    stats = xr.stats()
    assert stats["write_failures"] >= 1
    assert stats["spooled_rows"] == {"candidates": 20, "stages": 2, "runs": 2}
    blocker.unlink()  # the lake comes back
    time.sleep(1.1)  # past the first backoff
    record_runs(1, tag="after")
    assert xr.flush(10) is True
    assert count(lake, "runs") == 3
    assert count(lake, "candidates") == 30
    assert xr.stats()["replayed_rows"] == 24
    assert not list((tmp_path / "spool").rglob("*.parquet"))


def test_lake_and_spool_both_unwritable_keep_records_buffered_and_flush_false(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    xr.configure(root=str(blocker / "lake"), spool_dir=str(blocker / "spool"), fsync=False)
    record_runs(2)
    assert xr.flush(10) is False
    stats = xr.stats()
    assert stats["buffered_records"] > 0
    assert stats["dropped_total"] == 0


def test_memory_bound_drops_and_counts_instead_of_growing(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    xr.configure(root=str(blocker / "lake"), spool_dir=str(blocker / "spool"), fsync=False,
                 max_buffer_bytes=300_000, on_full="drop")
    record_runs(50, candidates=200)
    assert xr.flush(10) is False
    stats = xr.stats()
    assert stats["dropped"].get("buffer_full", 0) > 0
    assert stats["buffered_bytes"] <= 300_000


def test_published_files_are_never_temp_names(root: Path) -> None:
    record_runs(3)
    assert xr.flush(10)
    names = [p.name for p in root.rglob("*") if p.is_file()]
    assert names and all(n.startswith("part-") and n.endswith(".parquet") for n in names)


def test_file_names_are_unique_per_process(root: Path) -> None:
    record_runs(1)
    xr.flush(10)
    record_runs(1)
    xr.flush(10)
    names = [p.name for p in root.rglob("*.parquet")]
    assert len(names) == len(set(names)) == 6


def test_configure_flushes_records_to_the_old_root(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    xr.configure(root=str(old), fsync=False)
    record_runs(2)
    xr.configure(root=str(new), fsync=False)
    record_runs(1)
    assert xr.flush(10)
    assert count(old, "runs") == 2
    assert count(new, "runs") == 1


def test_writer_thread_does_not_start_until_something_is_recorded(root: Path) -> None:
    writer = process.current_writer()
    assert writer is None or writer._thread is None
