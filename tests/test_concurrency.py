"""Many processes and threads writing one lake at once, plus forks of a writing parent: exact rows."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from multiprocessing.synchronize import Barrier
from pathlib import Path

import duckdb
import pytest

import xray_lake as xr

PROCESSES, THREADS, RUNS_PER_THREAD = 8, 4, 12
FORKED_CHILDREN, PARENT_RUNS = 2, 9
STAGES, CANDIDATES = 3, 10
# tiny thresholds: each writer publishes a file every few milliseconds while the others do
WRITER_SETTINGS = dict(fsync=False, flush_rows=20, flush_interval_s=0.005, drain_interval_s=0.005)


def record(tag: str, threads: int, runs: int) -> None:
    """`threads` threads each record `runs` runs (run ids `<tag>-<thread>-<i>`, label `<tag>`'s
    first word)."""

    def work(t: int) -> None:
        for i in range(runs):
            with xr.run(tag.split("-")[0], run_id=f"{tag}-{t}-{i}") as run:
                for s in range(STAGES):
                    with run.stage(f"s{s}", type="filtering", passed="ok") as st:
                        items = [{"id": f"c{j}", "ok": (i + j) % 3 > 0} for j in range(CANDIDATES)]
                        st.input(items)
                        st.output(items)
                time.sleep(0.003)  # spread the runs over many flushes

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


def process_worker(root: str, tag: str, ready: Barrier, results: str) -> None:
    """One of the independent writer processes (forked from a fresh forkserver interpreter)."""
    xr.configure(root=root, **WRITER_SETTINGS)
    ready.wait(60)  # then everyone writes at once
    record(tag, THREADS, RUNS_PER_THREAD)
    assert xr.flush(30), xr.stats()
    Path(results, f"{tag}.json").write_text(json.dumps(xr.stats()))


def forked_child(root: str, results: str) -> None:
    assert xr.get_settings().root == root
    record(f"forked-{os.getpid()}", THREADS, RUNS_PER_THREAD)
    assert xr.flush(30), xr.stats()
    Path(results, f"forked-{os.getpid()}.json").write_text(json.dumps(xr.stats()))


def sql(root: Path, query: str) -> list[tuple[object, ...]]:
    con = duckdb.connect()
    for table in ("runs", "stages", "candidates"):
        con.sql(f"create view {table} as select * from read_parquet("
                f"'{root}/{table}/*/*/*.parquet', hive_partitioning = true)")
    return con.sql(query).fetchall()


@pytest.mark.slow
def test_processes_threads_and_forks_land_every_row_exactly_once(
    tmp_path: Path, isolated_lake: str
) -> None:
    root = Path(isolated_lake)
    # independent processes: a forkserver (a new interpreter that imported xray_lake once)
    # forks them, so eight of them cost no eight interpreter start-ups
    server = multiprocessing.get_context("forkserver")
    server.set_forkserver_preload(["xray_lake"])
    ready = server.Barrier(PROCESSES + 1)
    workers = [server.Process(target=process_worker,
                              args=(str(root), f"proc-{k}", ready, str(tmp_path)))
               for k in range(PROCESSES)]
    for worker in workers:
        worker.start()

    # the parent has a running writer with records buffered when it forks
    xr.configure(root=str(root), fsync=False, flush_interval_s=3600, drain_interval_s=0.01)
    record("parent", 1, PARENT_RUNS)
    assert xr.stats()["buffered_records"] > 0
    ready.wait(60)  # everyone writes at once from here
    forks = [multiprocessing.get_context("fork").Process(
        target=forked_child, args=(str(root), str(tmp_path))) for _ in range(FORKED_CHILDREN)]
    for child in forks:
        child.start()
    parent_threads = [threading.Thread(target=record, args=(f"parent-t{t}", 1, 3))
                      for t in range(2)]
    for thread in parent_threads:
        thread.start()
    for thread in parent_threads:
        thread.join()
    assert xr.flush(30)
    for process in [*forks, *workers]:
        process.join(60)
        assert process.exitcode == 0
    stats = [xr.stats()] + [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    assert len(stats) == 1 + PROCESSES + FORKED_CHILDREN

    writers = PROCESSES + FORKED_CHILDREN
    runs = writers * THREADS * RUNS_PER_THREAD + PARENT_RUNS + 2 * 3
    per_label = dict(sql(root, "select label, count(*) from runs group by 1"))
    assert per_label == {"proc": PROCESSES * THREADS * RUNS_PER_THREAD,
                         "forked": FORKED_CHILDREN * THREADS * RUNS_PER_THREAD,
                         "parent": PARENT_RUNS + 2 * 3}  # the forks never wrote the parent's
    assert sql(root, "select count(*), count(distinct run_id) from runs") == [(runs, runs)]
    assert sql(root, "select count(*), count(distinct (run_id, stage_id)) from stages") == [
        (runs * STAGES, runs * STAGES)]
    per_run = sql(root, "select count(*) as n, count(distinct (stage_id, candidate_id)) as d, "
                        "count(distinct stage_id) as s from candidates group by run_id")
    assert len(per_run) == runs
    assert set(per_run) == {(STAGES * CANDIDATES, STAGES * CANDIDATES, STAGES)}

    files = list(root.rglob("*.parquet"))
    assert len({f.name for f in files}) == len(files)  # every name unique in the whole lake
    assert len(files) == sum(s["files_written"] for s in stats)  # so no rename overwrote one
    assert sum(s["dropped_total"] for s in stats) == 0
    assert not [p for p in root.rglob("*") if p.is_file() and p.suffix == ".tmp"]
    print(f"\nconcurrency: {len(stats)} writers, {runs} runs, {len(files)} files, "
          f"{runs * STAGES * CANDIDATES} candidate rows, all exactly once")


def test_files_are_published_while_threads_keep_recording(isolated_lake: str) -> None:
    """Under sustained load the queue never empties; the writer must still publish on time."""
    root = Path(isolated_lake)
    xr.configure(root=str(root), fsync=False, flush_interval_s=0.05, drain_interval_s=0.01)
    stop = threading.Event()
    published_while_recording = threading.Event()

    def busy(t: int) -> None:
        i = 0
        while not stop.is_set():
            with xr.run("busy", run_id=f"busy-{t}-{i}") as run, \
                    run.stage("s", type="retrieval") as st:
                st.output([{"id": j} for j in range(10)])
            i += 1

    pool = [threading.Thread(target=busy, args=(t,)) for t in range(4)]
    for thread in pool:
        thread.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not published_while_recording.is_set():
            if list(root.glob("runs/*/*/*.parquet")):
                published_while_recording.set()
            time.sleep(0.01)
    finally:
        stop.set()
        for thread in pool:
            thread.join()
    assert published_while_recording.is_set(), f"nothing published in 5 s: {xr.stats()}"
    assert xr.flush(60)
    recorded = xr.stats()["runs_recorded"]
    assert sql(root, "select count(*), count(distinct run_id) from runs") == [(recorded,) * 2]
