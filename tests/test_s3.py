"""`s3://` lakes against a real S3 server (SeaweedFS on 127.0.0.1, see tests/s3_server.py).

Write -> query -> compact -> doctor; partition pruning; an outage that spools and replays
exactly once; several processes ("hosts") writing one prefix; compactions killed mid-way.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import xray_lake as xr
from tests.s3_server import BUCKET, S3Server, running_server
from xray_lake.cli.app import app
from xray_lake.errors import LakeReadError, QueryError
from xray_lake.sdk import recording
from xray_lake.storage import doctor
from xray_lake.storage.compaction.locks import RemoteLock, supports_conditional_writes
from xray_lake.storage.compaction.protocol import Partition
from xray_lake.storage.object_store import open_store

# A SeaweedFS server and many processes against it.
pytestmark = pytest.mark.slow

DAYS = {"2024-01-01": 1704110400.0, "2024-01-05": 1704456000.0}  # noon UTC
STAGES, CANDIDATES = 2, 5
KEYS = {"runs": "run_id", "stages": "run_id, stage_id",
        "candidates": "run_id, stage_id, candidate_id"}


@pytest.fixture
def s3_root(s3: S3Server) -> Iterator[str]:
    """A fresh prefix of the shared bucket, configured as the lake (storage options, not env)."""
    root = f"s3://{BUCKET}/lake-{secrets.token_hex(4)}"
    xr.configure(root=root, storage_options=s3.storage_options)
    yield root


def record(n: int, label: str, day: str, *, prefix: str = "r") -> None:
    """`n` runs of two filtering stages over CANDIDATES candidates, dated `day`."""
    clock, recording._clock = recording._clock, lambda: DAYS[day]
    try:
        for i in range(n):
            with xr.run(label, run_id=f"{prefix}-{label}-{day}-{i}") as run:
                for s in range(STAGES):
                    with run.stage(f"s{s}", type="filtering", passed="ok", reason_label="why") \
                            as st:
                        items = [{"id": f"c{j}", "ok": j % 2 == 0, "why": "far"}
                                 for j in range(CANDIDATES)]
                        st.input(items)
                        st.output(items)
    finally:
        recording._clock = clock


def counts(lake: xr.Lake) -> dict[str, tuple[int, int]]:
    """(rows, distinct keys) per table: equal when no row is doubled."""
    found = {}
    for table, key in KEYS.items():
        row = lake.sql(f"select count(*) as n, count(distinct ({key})) as k from {table}").row(0)
        found[table] = (int(row[0]), int(row[1]))
    return found


def expected(runs: int) -> dict[str, tuple[int, int]]:
    return {"runs": (runs, runs), "stages": (runs * STAGES,) * 2,
            "candidates": (runs * STAGES * CANDIDATES,) * 2}


def objects(root: str, table: str) -> list[str]:
    return [e.rel for e in open_store(root).walk(table) if e.rel.endswith(".parquet")]


def test_write_query_compact_and_doctor_on_s3(s3_root: str) -> None:
    for _ in range(3):  # three flushes: three small files per table and partition
        for label in ("search", "a/b ..%"):
            record(2, label, "2024-01-01", prefix=secrets.token_hex(2))
        assert xr.flush(10), xr.stats()
    assert xr.stats()["spooled_files"] == 0
    before = objects(s3_root, "candidates")
    assert len(before) == 6 and all(p.startswith("candidates/label=") for p in before)

    with xr.Lake(s3_root) as lake:
        assert lake.s3_access in ("httpfs", "fsspec")
        assert counts(lake) == expected(12)
        labels = lake.sql("select distinct label from runs order by 1")["label"].to_list()
        assert labels == ["a/b ..%", "search"]  # escaped folders read back exact

        report = xr.compact(s3_root, before="2030-01-01")
        assert report.errors == () and report.files_in == 18 and report.files_out == 6
        assert counts(lake) == expected(12)  # the same Lake sees the merged files
    assert len(objects(s3_root, "candidates")) == 2
    assert not [e for e in open_store(s3_root).walk("_compaction")
                if e.name.endswith((".json", ".lock"))]

    store = open_store(s3_root)
    bad = "stages/label=search/date=2024-01-01/part-v1-broken-00000001.parquet"
    store.put(bad, b"not parquet at all")
    with pytest.raises(LakeReadError):
        xr.Lake(s3_root).sql("select count(*) from stages")
    found = doctor.scan(s3_root)
    assert [(p.kind, p.path) for p in found.problems] == [(doctor.UNREADABLE, bad)]
    fixed = CliRunner().invoke(app, ["doctor", "--fix", "--root", s3_root])
    assert fixed.exit_code == 0, fixed.output
    assert not store.exists(bad) and store.exists(f"_quarantine/{bad}")
    assert counts(xr.Lake(s3_root)) == expected(12)


def test_label_and_date_filters_never_open_other_partitions_on_s3(s3_root: str) -> None:
    for day in DAYS:
        for label in ("a", "b"):
            record(2, label, day)
    assert xr.flush(10)
    store = open_store(s3_root)
    for table in KEYS:  # every file of label b or of the second day becomes garbage
        for rel in objects(s3_root, table):
            if "/label=b/" in rel or "/date=2024-01-05/" in rel:
                store.put(rel, b"garbage: any read of this object fails")
    with xr.Lake(s3_root) as lake:
        one = lake.sql("select count(*) as n from candidates "
                       "where label = 'a' and date = '2024-01-01'")
        assert one["n"][0] == 2 * STAGES * CANDIDATES
        hits = lake.find({"pipeline": {"label": "a"}, "stage": {"type": "filtering"},
                          "$until": "2024-01-02"})
        assert hits.height == 2 * STAGES
        with pytest.raises(LakeReadError):  # without the filters the garbage is read
            lake.sql("select count(*) from candidates")


def test_read_only_s3_lake_reads_its_prefix_and_nothing_else(s3_root: str,
                                                             tmp_path: Path) -> None:
    record(2, "ro", "2024-01-01")
    assert xr.flush(10)
    other = s3_root + "-other"  # a sibling prefix of the same bucket: not this lake
    store = open_store(other)
    store.put("secret.csv", b"name,password\nroot,hunter2\n")
    local = tmp_path / "local.csv"
    local.write_text("a\n1\n", encoding="utf-8")
    with xr.Lake(s3_root) as lake:
        assert counts(lake) == expected(2)
        assert lake.find({"stage": {"type": "filtering"}}).height == 2 * STAGES
        for sql in (f"select * from read_csv('{other}/secret.csv')",
                    f"select * from read_csv('{local}')",
                    f"copy (select 1) to '{s3_root}/x.csv'"):
            with pytest.raises(QueryError):
                lake.sql(sql)
    with xr.Lake(s3_root, read_only=False) as lake:
        assert lake.sql(f"select * from read_csv('{other}/secret.csv')").height == 1


def test_cli_reads_an_s3_lake_with_storage_options_and_rejects_bad_ones(
        s3: S3Server, s3_root: str) -> None:
    record(3, "cli", "2024-01-01")
    assert xr.flush(10)
    xr.configure(storage_options={})  # from here on only the command line knows the server
    flags = [f"--storage-option={k}={v}" for k, v in s3.storage_options.items()]
    result = CliRunner().invoke(app, ["query", "select count(*) as n from runs", "--root",
                                      s3_root, "--format", "csv", *flags])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["n", "3"]
    bad = CliRunner().invoke(app, ["runs", "--root", s3_root, "--storage-option",
                                   "endpoint=http://x"])
    assert bad.exit_code == 2
    assert "unknown storage option 'endpoint' (did you mean 'endpoint_url'?)" in bad.output


def test_outage_spools_records_and_replay_lands_them_exactly_once(tmp_path: Path) -> None:
    with running_server(tmp_path / "seaweedfs") as server:
        root = f"s3://{BUCKET}/outage"
        xr.configure(root=root, storage_options={**server.storage_options,
                                                 "connect_timeout": "1"})
        record(4, "p", "2024-01-01", prefix="before")
        assert xr.flush(10)
        server.stop()  # mid-run: the pipeline goes on
        record(5, "p", "2024-01-01", prefix="during")
        assert xr.flush(20), xr.stats()  # durable: in the local spool
        stats = xr.stats()
        assert stats["write_failures"] >= 1 and stats["dropped_total"] == 0
        assert stats["spooled_rows"]["runs"] == 5
        xr.configure(root=f"s3://{BUCKET}/elsewhere")  # only the replay under test moves them

        server.start()  # same data folder and ports
        result = CliRunner().invoke(app, ["replay", "--root", root])
        assert result.exit_code == 0, result.output
        assert "replayed 3 files" in result.stdout
        again = CliRunner().invoke(app, ["replay", "--root", root])
        assert "nothing to replay" in again.stdout
        with xr.Lake(root) as lake:
            assert counts(lake) == expected(9)
            ids = lake.sql("select run_id from runs order by 1")["run_id"].to_list()
        assert ids == sorted([f"before-p-2024-01-01-{i}" for i in range(4)]
                             + [f"during-p-2024-01-01-{i}" for i in range(5)])


WRITER = textwrap.dedent("""
    import sys
    import xray_lake as xr
    from xray_lake.writer import process

    host, runs = sys.argv[1], int(sys.argv[2])
    process.HOST = host  # what another machine would be
    for i in range(runs):
        with xr.run("shared", run_id=f"{host}-{i}") as run:
            with run.stage("f", type="filtering", passed="ok") as st:
                items = [{"id": f"c{j}", "ok": j % 3 > 0} for j in range(7)]
                st.input(items)
                st.output(items)
        if i % 5 == 4:
            assert xr.flush(30)
    assert xr.flush(30), xr.stats()
    assert xr.stats()["spooled_files"] == 0, xr.stats()
""")


def test_processes_on_several_hosts_write_one_prefix(s3: S3Server, tmp_path: Path) -> None:
    root = f"s3://{BUCKET}/shared-{secrets.token_hex(4)}"
    env = {**os.environ, **s3.env, "XRAY_LAKE_ROOT": root,
           "XRAY_LAKE_SPOOL": str(tmp_path / "spool")}
    hosts = ("web-1", "web-2", "batch.eu-3")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, host, "20"], env=env,
                              stderr=subprocess.PIPE, text=True) for host in hosts]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    xr.configure(storage_options=s3.storage_options)
    with xr.Lake(root) as lake:
        rows = lake.sql("select host, count(*) as runs from runs group by 1 order by 1")
        assert rows.rows() == [(h, 20) for h in sorted(hosts)]
        got = lake.sql("select count(*) as n, count(distinct (run_id, candidate_id)) as k "
                       "from candidates").row(0)
        assert got == (60 * 7, 60 * 7)
    names = objects(root, "runs")
    assert len(names) == len(set(names)) == 3 * 4  # one file per process per flush


KILLER = textwrap.dedent("""
    import os, signal, sys
    import xray_lake as xr
    from xray_lake.storage.compaction import plan

    step = sys.argv[2]
    plan.step_hook = lambda s: os.kill(os.getpid(), signal.SIGKILL) if s == step else None
    xr.compact(sys.argv[1], before="2030-01-01")
""")


@pytest.mark.parametrize("step", ["visible", "source_deleted"])
def test_compaction_killed_mid_merge_is_exact_for_readers_and_recovered(
        s3: S3Server, s3_root: str, step: str) -> None:
    for _ in range(3):
        record(2, "k", "2024-01-01", prefix=secrets.token_hex(2))
        assert xr.flush(10)
    killed = subprocess.run([sys.executable, "-c", KILLER, s3_root, step],
                            env={**os.environ, **s3.env}, capture_output=True, text=True,
                            timeout=120)
    assert killed.returncode == -9, killed.stderr
    markers = [e.name for e in open_store(s3_root).walk("_compaction")]
    assert any(n.endswith(".pending.json" if step == "visible" else ".committed.json")
               for n in markers), markers
    with xr.Lake(s3_root) as lake:
        assert counts(lake) == expected(6)  # the markers keep readers exact
        report = xr.compact(s3_root, before="2030-01-01")
        assert (report.rolled_back, report.rolled_forward) == (
            (1, 0) if step == "visible" else (0, 1))
        assert report.errors == ()
        assert counts(lake) == expected(6)
    assert not [n for n in (e.name for e in open_store(s3_root).walk("_compaction"))
                if n.endswith((".json", ".lock"))]


def test_partition_lock_is_exclusive_and_an_expired_one_is_taken_over(s3_root: str) -> None:
    store = open_store(s3_root)
    assert supports_conditional_writes(store)
    part = Partition("runs", "x", "2024-01-01")
    first, second = RemoteLock(store, part, True), RemoteLock(store, part, True)
    assert first.acquire() and not second.acquire()
    assert first.still_mine()
    content, etag = store.read_tagged(first.rel) or (b"", "")
    owner = json.loads(content)
    owner.update(expires=0, host="elsewhere")  # a compactor that went silent long ago
    store.replace(first.rel, json.dumps(owner).encode(), etag)
    assert second.acquire() and not first.still_mine()
    first.release()  # not its lock any more: leaves it alone
    assert store.exists(second.rel)
    second.release()
    assert not store.exists(second.rel)
