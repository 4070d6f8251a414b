"""Compaction: same rows in fewer sorted files, and readers never see a row twice or miss one."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

import xray_lake as xr
from xray_lake.cli.compact import register
from xray_lake.demo.fashion_search import run_demo
from xray_lake.records.schema import SCHEMA_VERSION, SCHEMAS
from xray_lake.storage.compaction import locks, protocol
from xray_lake.storage.fs import publish_table
from xray_lake.storage.layout import partition_dir

OLD = ("2024-01-01", "2024-01-02")
BEFORE = "2025-01-01"
# One scan per table: two scans of a view in one query may see different new files.
ID_OF = {"candidates": "candidate_id", "runs": "run_id"}


def synthetic(table: str, first: int, n: int) -> pa.Table:
    """`n` rows with unique ids from `first`, run ids in random order, the other columns null."""
    rng = random.Random(first)
    columns: dict[str, pa.Array] = {f.name: pa.nulls(n, f.type) for f in SCHEMAS[table]}
    keys = range(first, first + n)
    columns["run_id"] = pa.array([f"run-{rng.randrange(50):03d}-{k if table == 'runs' else 0}"
                                  for k in keys])
    if table == "candidates":
        columns["stage_id"] = pa.array([f"st-{rng.randrange(5)}" for _ in keys])
        columns["candidate_id"] = pa.array([f"c-{k}" for k in keys])
        columns["score"] = pa.array([rng.random() for _ in keys])
        columns["payload"] = pa.array([json.dumps({"k": k}) for k in keys], pa.large_string())
    return pa.Table.from_arrays([columns[f.name] for f in SCHEMAS[table]],
                                schema=SCHEMAS[table])


class Published:
    """Small files published into the lake, with row counts readers can be checked against."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.next_id = 0
        self.seq = 0
        self.lock = threading.Lock()
        self.started = Counter[str]()  # rows whose file may be visible
        self.done = Counter[str]()  # rows whose file is certainly visible

    def add(self, table: str, label: str, date: str, files: int = 1, rows: int = 7) -> None:
        for _ in range(files):
            with self.lock:
                first, self.next_id, self.seq = self.next_id, self.next_id + rows, self.seq + 1
                self.started[table] += rows
                seq = self.seq
            publish_table(self.root, table, label, date, synthetic(table, first, rows), "test-w",
                          seq, fsync=False)
            with self.lock:
                self.done[table] += rows

    def fill(self, labels: tuple[str, ...] = ("a", "b"), dates: tuple[str, ...] = OLD,
             files: int = 5) -> None:
        for table in ("runs", "candidates"):
            for label in labels:
                for date in dates:
                    self.add(table, label, date, files)


class Readers:
    """Two reader threads while files are published and merged, one opening a fresh Lake per
    round, one long-lived. Each query's counts must lie between the rows certainly published
    before it and the rows possibly published by its end, with no id counted twice; what does
    not goes to `problems`, for the test to assert on."""

    def __init__(self, published: Published, stop: threading.Event) -> None:
        self.published, self.stop = published, stop
        self.problems: list[str] = []
        self.queries = Counter[str]()  # by kind: "fresh", "long-lived"

    def threads(self) -> list[threading.Thread]:
        return [threading.Thread(target=self.read, args=(fresh,)) for fresh in (True, False)]

    def read(self, fresh: bool) -> None:
        kind = "fresh" if fresh else "long-lived"
        root = self.published.root
        long_lived = xr.Lake(root)
        try:
            while not self.stop.is_set():
                lake = xr.Lake(root) if fresh else long_lived
                for table in ("candidates", "runs"):
                    low = self.published.done[table]
                    rows, distinct = count(lake, table)
                    high = self.published.started[table]
                    self.queries[kind] += 1
                    if rows != distinct or not low <= rows <= high:
                        self.problems.append(f"{kind}: {rows} {table} rows, {distinct} distinct; "
                                             f"{low} to {high} published")
                if fresh:
                    lake.close()
        except Exception as exc:  # reported by the test's assertion on problems
            self.problems.append(f"{kind}: {exc!r}")


def count(lake: xr.Lake, table: str) -> tuple[int, int]:
    """(rows, distinct ids) of a table, from one scan."""
    row = lake.sql(f"select count(*), count(distinct {ID_OF[table]}) from {table}").row(0)
    return int(row[0]), int(row[1])


def counts(lake: xr.Lake) -> tuple[int, int, int, int]:
    return count(lake, "candidates") + count(lake, "runs")


def data_files(root: str, table: str) -> list[Path]:
    return sorted(Path(root, table).glob("*/*/*.parquet"))


def leftovers(root: str) -> list[str]:
    """Markers, locks and temp files: none may survive a finished compaction."""
    found = [p.name for p in Path(root, "_compaction").glob("*") if p.name != "epoch"]
    found += [p.name for p in Path(root).glob("*/*/*/.*")]
    return found


def rows_of(lake: xr.Lake, table: str) -> dict[str, int]:
    """Every row (all columns, maps included, as DuckDB prints it) with its multiplicity."""
    return dict(lake.sql(f"select t::varchar, count(*) from {table} t group by all").iter_rows())


# --- what compaction writes ------------------------------------------------------------------


@pytest.mark.slow
def test_compaction_keeps_exactly_the_same_rows_of_every_table(isolated_lake: str) -> None:
    for seed in range(4):  # each run_demo flushes: one more small file per table and label
        assert run_demo(runs=3, seed=seed).flushed
    before = {t: rows_of(xr.Lake(isolated_lake), t) for t in SCHEMAS}
    n_files = sum(len(data_files(isolated_lake, t)) for t in SCHEMAS)
    assert n_files >= 18

    report = xr.compact(isolated_lake, before="2999-01-01")

    after = {t: rows_of(xr.Lake(isolated_lake), t) for t in SCHEMAS}
    assert after == before
    assert report.files_in == n_files and report.files_out == 6
    assert report.rows == sum(sum(c.values()) for c in before.values())
    for table in SCHEMAS:  # one file per partition, named like every data file
        files = data_files(isolated_lake, table)
        assert len(files) == len({f.parent for f in files}) == 2
        assert all(f.name.startswith(f"part-v{SCHEMA_VERSION}-compact-") for f in files)
    assert leftovers(isolated_lake) == []


def test_merged_files_are_sorted_by_run_and_stage(isolated_lake: str) -> None:
    Published(isolated_lake).fill(labels=("a",), dates=OLD[:1], files=6)
    xr.compact(isolated_lake, before=BEFORE)
    (merged,) = data_files(isolated_lake, "candidates")
    table = pq.read_table(merged, columns=["run_id", "stage_id"]).to_pylist()
    keys = [(r["run_id"], r["stage_id"]) for r in table]
    assert keys == sorted(keys) and len(set(keys)) > 1
    (runs,) = data_files(isolated_lake, "runs")
    run_ids = pq.read_table(runs, columns=["run_id"])["run_id"].to_pylist()
    assert run_ids == sorted(run_ids)


def test_merged_files_use_the_lake_parquet_settings(isolated_lake: str) -> None:
    Published(isolated_lake).fill(labels=("a",), dates=OLD[:1], files=3)
    xr.compact(isolated_lake, before=BEFORE)
    (merged,) = data_files(isolated_lake, "candidates")
    meta = pq.ParquetFile(merged).metadata
    assert meta.schema.to_arrow_schema().equals(SCHEMAS["candidates"])
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_label_and_before_restrict_the_partitions(isolated_lake: str) -> None:
    published = Published(isolated_lake)
    published.fill(labels=("a", "b"), dates=OLD, files=3)
    report = xr.compact(isolated_lake, label="a", before=OLD[1])
    assert {(p.table, p.label, p.date) for p in report.partitions} == {
        ("runs", "a", OLD[0]), ("candidates", "a", OLD[0])}
    for table in ("runs", "candidates"):
        assert len(list(Path(partition_dir(isolated_lake, table, "a", OLD[0])).iterdir())) == 1
        for label, date in (("a", OLD[1]), ("b", OLD[0]), ("b", OLD[1])):
            assert len(list(Path(partition_dir(isolated_lake, table, label, date))
                            .iterdir())) == 3


@pytest.mark.parametrize("label", ["a/../b c/ü%", "", "x" * 300])
def test_labels_that_need_escaping_are_compacted_in_place(isolated_lake: str, label: str) -> None:
    published = Published(isolated_lake)
    published.add("candidates", label, OLD[0], files=3)
    report = xr.compact(isolated_lake, label=label, before=BEFORE)
    assert report.files_in == 3 and report.files_out == 1
    assert len(list(Path(partition_dir(isolated_lake, "candidates", label, OLD[0])).iterdir())) == 1
    assert count(xr.Lake(isolated_lake), "candidates") == (21, 21)


def test_todays_partition_is_left_alone_by_default(isolated_lake: str) -> None:
    today = dt.datetime.now(dt.UTC).date().isoformat()
    published = Published(isolated_lake)
    published.fill(dates=(today, OLD[0]), labels=("a",), files=3)
    report = xr.compact(isolated_lake)
    assert {p.date for p in report.partitions} == {OLD[0]} and report.before == today
    assert len(list(Path(partition_dir(isolated_lake, "runs", "a", today)).iterdir())) == 3


def test_partitions_with_fewer_than_two_small_files_are_skipped(isolated_lake: str) -> None:
    published = Published(isolated_lake)
    published.add("runs", "a", OLD[0], files=1)
    published.add("runs", "b", OLD[0], files=4)
    big = os.path.getsize(data_files(isolated_lake, "runs")[0]) * 4
    report = xr.compact(isolated_lake, before=BEFORE, target_size=big)  # all files are small
    assert [p.label for p in report.partitions] == ["b"]
    assert xr.compact(isolated_lake, before=BEFORE, target_size=1).partitions == ()  # none is


def test_large_partitions_are_merged_into_several_files_of_about_target_size(
        isolated_lake: str) -> None:
    Published(isolated_lake).add("candidates", "a", OLD[0], files=12, rows=50)
    size = os.path.getsize(data_files(isolated_lake, "candidates")[0])
    report = xr.compact(isolated_lake, before=BEFORE, target_size=size * 4)
    assert report.files_in == 12 and report.files_out == 3
    assert counts(xr.Lake(isolated_lake))[:2] == (600, 600)


def test_progress_is_called_once_per_partition(isolated_lake: str) -> None:
    Published(isolated_lake).fill(files=2)
    calls: list[tuple[int, int]] = []
    xr.compact(isolated_lake, before=BEFORE, progress=lambda done, total: calls.append(
        (done, total)))
    assert calls == [(i, 8) for i in range(9)]


def test_bad_arguments_raise_errors_that_say_how_to_fix_them(isolated_lake: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        xr.compact(isolated_lake, before="20240101")
    with pytest.raises(ValueError, match="positive"):
        xr.compact(isolated_lake, target_size=0)
    with pytest.raises(xr.XrayLakeError, match="unsupported scheme gs://"):
        xr.compact("gs://bucket/lake")  # s3:// lakes are compacted: tests/test_s3.py


def test_a_marker_pointing_outside_its_partition_is_refused(isolated_lake: str) -> None:
    Published(isolated_lake).fill(labels=("a",), dates=OLD[:1], files=2)
    os.makedirs(Path(isolated_lake, "_compaction"))
    Path(isolated_lake, "_compaction", "x.committed.json").write_text(json.dumps({
        "table": "runs", "label": "a", "date": OLD[0], "partition": f"runs/label=a/date={OLD[0]}",
        "target": f"runs/label=a/date={OLD[0]}/part-v1-x-00000001.parquet",
        "sources": ["../../../etc/passwd"]}))
    with pytest.raises(xr.XrayLakeError, match=r"unreadable compaction marker .*not a data file"):
        xr.compact(isolated_lake, before=BEFORE)


def test_lake_reads_plain_globs_until_a_merge_is_under_way(isolated_lake: str) -> None:
    """With a pending merge whose target is visible, the views list files and hide the target."""
    Published(isolated_lake).add("runs", "a", OLD[0], files=2)
    lake = xr.Lake(isolated_lake)
    view_sql = "select sql from duckdb_views() where view_name = 'runs'"
    assert "*.parquet" in lake.sql(view_sql).item()
    source = data_files(isolated_lake, "runs")[0]
    target = source.with_name("part-v1-compact-test-00000001.parquet")
    target.write_bytes(source.read_bytes())  # a merge between steps 4 and 5: rows twice on disk
    os.makedirs(Path(isolated_lake, "_compaction"))
    Path(isolated_lake, "_compaction", "m.pending.json").write_text(json.dumps({
        "table": "runs", "label": "a", "date": OLD[0], "partition": f"runs/label=a/date={OLD[0]}",
        "target": f"runs/label=a/date={OLD[0]}/{target.name}",
        "sources": [f"runs/label=a/date={OLD[0]}/{source.name}"]}))
    assert count(lake, "runs") == (14, 14)
    assert target.name not in lake.sql(view_sql).item()


# --- locks -----------------------------------------------------------------------------------


def _lock_path(root: str, table: str, label: str, date: str) -> Path:
    part = protocol.Partition(table, label, date)
    os.makedirs(Path(root, "_compaction"), exist_ok=True)
    return Path(locks.LocalLock(root, part).path)


def test_a_partition_locked_by_a_live_compactor_is_skipped(isolated_lake: str) -> None:
    Published(isolated_lake).fill(labels=("a",), dates=OLD[:1], files=3)
    lock = _lock_path(isolated_lake, "runs", "a", OLD[0])
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": "x"}))
    report = xr.compact(isolated_lake, before=BEFORE)
    assert report.locked == (f"runs/label=a/date={OLD[0]}",)
    assert [p.table for p in report.partitions] == ["candidates"]
    assert lock.exists()


def test_a_lock_left_by_a_dead_process_is_taken_over(isolated_lake: str) -> None:
    Published(isolated_lake).fill(labels=("a",), dates=OLD[:1], files=3)
    lock = _lock_path(isolated_lake, "runs", "a", OLD[0])
    dead_pid = 4_194_304  # above Linux's largest pid_max: no process has it
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid, "token": "x"}))
    report = xr.compact(isolated_lake, before=BEFORE)
    assert report.locked == () and len(report.partitions) == 2
    assert not lock.exists()


# --- readers during compaction ---------------------------------------------------------------


@pytest.mark.slow
def test_readers_never_see_a_row_twice_or_miss_one_while_compaction_runs(
        isolated_lake: str) -> None:
    """Small files keep arriving and are merged every ~0.1 s (far more often than any cron).

    Each query's counts must lie between the rows certainly published before it and the rows
    possibly published by its end, with no id counted twice. Merging much faster than queries
    run can exhaust a query's retries: that is a documented limit, not tested here.
    """
    published = Published(isolated_lake)
    published.fill(files=10)
    stop = threading.Event()
    readers = Readers(published, stop)
    merges: list[int] = []

    def compactor() -> None:
        rng = random.Random(1)
        try:
            while not stop.is_set():
                for table in ("runs", "candidates"):
                    published.add(table, rng.choice("ab"), rng.choice(OLD), files=3)
                merges.append(len(xr.compact(isolated_lake, before=BEFORE).partitions))
                stop.wait(0.1)
        except Exception as exc:  # reported by the assertion below
            readers.problems.append(f"compactor: {exc!r}")

    threads = [threading.Thread(target=compactor), *readers.threads()]
    for thread in threads:
        thread.start()
    # Enough interleavings to matter, however loaded the machine: at least 20 merges and 20
    # queries of each reader kind (about 4 s when idle), bounded so that a hang still fails.
    deadline = time.monotonic() + 120
    queries = readers.queries
    while time.monotonic() < deadline and not readers.problems and (
            sum(merges) < 20 or min(queries["fresh"], queries["long-lived"]) < 20):
        time.sleep(0.2)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert readers.problems == []
    assert sum(merges) >= 20 and min(queries["fresh"], queries["long-lived"]) >= 20, (
        merges, queries)
    assert counts(xr.Lake(isolated_lake)) == (published.done["candidates"],) * 2 + (
        published.done["runs"],) * 2


# --- several processes, and crashes ----------------------------------------------------------

DRIVER = r"""
import json, os, signal, sys
import xray_lake as xr
from xray_lake.storage.compaction import plan

def run(root, before, step):
    if step:
        plan.step_hook = lambda s: os.kill(os.getpid(), signal.SIGKILL) if s == step \
            else None
    xr.configure(root=root, fsync=False)
    report = xr.compact(root, before=before)
    return {"partitions": [f"{p.table}/{p.label}/{p.date}" for p in report.partitions],
            "locked": list(report.locked), "errors": list(report.errors)}

print("ready", flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    n = cmd.get("processes", 1)
    go_r, go_w = os.pipe()
    children = []
    for _ in range(n):
        out_r, out_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(go_w)
            os.read(go_r, 1)  # start together
            try:
                result = run(cmd["root"], cmd["before"], cmd.get("step"))
            except BaseException as exc:
                result = {"exception": repr(exc)}
            os.write(out_w, json.dumps(result).encode())
            os._exit(0)
        os.close(out_w)
        children.append((pid, out_r))
    os.close(go_r)
    os.close(go_w)
    results = []
    for pid, out_r in children:
        chunks = []
        while chunk := os.read(out_r, 65536):
            chunks.append(chunk)
        os.close(out_r)
        _, status = os.waitpid(pid, 0)
        results.append({"signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0,
                        "result": json.loads(b"".join(chunks) or b"null")})
    print(json.dumps(results), flush=True)
"""


class Driver:
    """One Python process, xray_lake imported once, forking compactors on request."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", DRIVER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def compact(self, root: str, *, processes: int = 1,
                step: str | None = None) -> list[dict[str, Any]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"root": root, "before": BEFORE, "step": step,
                                          "processes": processes}) + "\n")
        self.proc.stdin.flush()
        result: list[dict[str, Any]] = json.loads(self.proc.stdout.readline())
        return result

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def driver() -> Iterator[Driver]:
    started = Driver()
    yield started
    started.close()


@pytest.mark.slow
def test_two_compactor_processes_at_once_merge_each_partition_once(
        isolated_lake: str, driver: Driver) -> None:
    published = Published(isolated_lake)
    published.fill(labels=("a", "b", "c"), dates=OLD, files=8)

    results = driver.compact(isolated_lake, processes=2)

    assert [r["signal"] for r in results] == [0, 0]
    merged = [p for r in results for p in r["result"]["partitions"]]
    assert sorted(merged) == sorted(set(merged)) and len(merged) == 12
    assert counts(xr.Lake(isolated_lake)) == (published.done["candidates"],) * 2 + (
        published.done["runs"],) * 2
    assert all(len(list(d.iterdir())) == 1 for d in Path(isolated_lake).glob("*/*/*"))
    assert leftovers(isolated_lake) == []


@pytest.mark.parametrize("step", ["written", "pending", "visible", "committed", "source_deleted"])
def test_a_compactor_killed_between_steps_is_rolled_back_or_forward(
        isolated_lake: str, driver: Driver, step: str) -> None:
    published = Published(isolated_lake)
    published.fill(labels=("a",), dates=OLD[:1], files=4)
    expected = (published.done["candidates"],) * 2 + (published.done["runs"],) * 2

    (killed,) = driver.compact(isolated_lake, step=step)

    assert killed["signal"] == 9
    markers = sorted(p.name.split(".", 1)[1] for p in Path(isolated_lake, "_compaction")
                     .glob("*.json"))
    assert markers == {"written": [], "pending": ["pending.json"], "visible": ["pending.json"],
                       "committed": ["committed.json"],
                       "source_deleted": ["committed.json"]}[step]
    assert counts(xr.Lake(isolated_lake)) == expected  # readers are exact even now

    report = xr.compact(isolated_lake, before=BEFORE)

    rolled = (report.rolled_back, report.rolled_forward)
    assert rolled == ((1, 0) if step in ("pending", "visible") else
                      (0, 1) if step in ("committed", "source_deleted") else (0, 0))
    assert counts(xr.Lake(isolated_lake)) == expected
    assert all(len(list(d.iterdir())) == 1 for d in Path(isolated_lake).glob("*/*/*"))
    assert leftovers(isolated_lake) == []


# --- the command -----------------------------------------------------------------------------


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:
        """Keeps `compact` a subcommand."""

    return app


def test_cli_compacts_and_reports_files_and_rows(isolated_lake: str) -> None:
    Published(isolated_lake).fill(labels=("a",), files=3)
    result = CliRunner().invoke(cli(), ["compact", "--root", isolated_lake,
                                        "--before", BEFORE, "--target-size", "1MB"])
    assert result.exit_code == 0, result.output
    assert "Compacted 4 partitions before 2025-01-01: 12 files -> 4 (84 rows)" in result.stdout
    again = CliRunner().invoke(cli(), ["compact", "--root", isolated_lake, "--before", BEFORE])
    assert again.exit_code == 0 and "Nothing to compact" in again.stdout


def test_cli_label_option_limits_the_partitions(isolated_lake: str) -> None:
    Published(isolated_lake).fill(labels=("a", "b"), dates=OLD[:1], files=2)
    result = CliRunner().invoke(cli(), ["compact", "--root", isolated_lake, "--label", "b",
                                        "--before", BEFORE])
    assert result.exit_code == 0 and "Compacted 2 partitions" in result.stdout
    assert len(list(Path(partition_dir(isolated_lake, "runs", "a", OLD[0])).iterdir())) == 2


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--before", "01/02/2024", "is not a date"),
    ("--target-size", "big", "is not a size"),
])
def test_cli_rejects_bad_dates_and_sizes(isolated_lake: str, option: str, value: str,
                                         message: str) -> None:
    result = CliRunner().invoke(cli(), ["compact", "--root", isolated_lake, option, value])
    assert result.exit_code == 2 and message in result.output
