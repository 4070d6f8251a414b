"""Exactly once across compaction: replay never brings back a file compaction merged away."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import xray_lake as xr
from tests.s3_server import BUCKET, S3Server
from tests.test_replay import cli, counts, expected, record, spooled
from tests.test_s3 import counts as s3_counts
from tests.test_s3 import expected as s3_expected
from tests.test_s3 import record as s3_record
from xray_lake.storage.compaction.protocol import merged_names
from xray_lake.storage.object_store import open_store
from xray_lake.storage.spool import pending, spool_root

# A replay process that is killed (SIGKILL, by itself) right after its second copy into the
# lake and before it deletes that file from the spool.
KILLED_REPLAY = textwrap.dedent("""
    import os, signal, sys
    from xray_lake.storage import spool
    copied = []
    real_copy = spool._copy_atomically
    def copy_then_die(source, target, fsync):
        real_copy(source, target, fsync)
        copied.append(target)
        if len(copied) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    spool._copy_atomically = copy_then_die
    from xray_lake.cli.app import app
    app(["replay", "--spool", sys.argv[1]])
""")


def run_killed(script: str, spool: Path, env: dict[str, str] | None = None) -> None:
    """Run a replay `script` over `spool`; it must end killed by its own SIGKILL."""
    killed = subprocess.run([sys.executable, "-c", script, str(spool)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr


def replay_the_rest(spool: Path, folder: str, total: int) -> None:
    """`xray-lake replay` after a killed replay that had copied two of the `total` spooled
    files (the second still in the spool too): it replays the other ones, emptying the spool."""
    result = CliRunner().invoke(cli(), ["replay", "--spool", str(spool)])
    assert result.exit_code == 0, result.output
    assert f"replayed {total - 2} files" in result.output
    assert pending(folder) == []


@pytest.mark.slow
def test_replay_killed_after_its_copy_then_compact_then_replay_never_doubles(
        tmp_path: Path) -> None:
    lake, spool, folder = spooled(tmp_path, 6)
    total = len(pending(folder))
    assert total == 18

    run_killed(KILLED_REPLAY, spool)
    in_lake = sorted(lake.glob("candidates/*/*/*.parquet"))
    assert len(in_lake) == 2
    assert len(pending(folder)) == total - 1  # the second copy is in the lake AND the spool
    assert in_lake[0].name in {Path(p).name for p in pending(folder)} or \
        in_lake[1].name in {Path(p).name for p in pending(folder)}

    report = xr.compact(str(lake), before="2999-01-01")
    assert report.errors == () and report.files_in == 2 and report.files_out == 1
    partition = in_lake[0].parent.relative_to(lake).as_posix()
    assert merged_names(str(lake), partition) == {p.name for p in in_lake}

    replay_the_rest(spool, folder, total)
    assert counts(lake) == expected(6)  # 360 candidate rows, all distinct: none came back


@pytest.mark.slow
def test_the_writers_own_spool_drain_after_a_killed_replay_and_compact_never_doubles(
        tmp_path: Path) -> None:
    lake, spool, folder = spooled(tmp_path, 6)
    run_killed(KILLED_REPLAY, spool)
    report = xr.compact(str(lake), before="2999-01-01")
    assert report.errors == () and report.files_in == 2 and report.files_out == 1

    # no `xray-lake replay`: the next writer of this lake drains the spool after its first write
    xr.configure(root=str(lake), spool_dir=str(spool), fsync=False)
    record(1, "q")
    assert xr.flush(10)
    assert pending(folder) == []
    assert counts(lake) == expected(7)  # every row once: the merged file did not come back


REPLAYER = textwrap.dedent("""
    import os, sys, time
    from xray_lake.storage.spool import replay_folder
    while not os.path.exists(sys.argv[3]):
        time.sleep(0.001)
    result = replay_folder(sys.argv[1], sys.argv[2], fsync=False)
    print(result.files, result.failed)
""")


@pytest.mark.slow
def test_concurrent_replays_report_files_that_add_up_to_the_files_there_were(
        tmp_path: Path) -> None:
    lake, _, folder = spooled(tmp_path, 30)
    total = len(pending(folder))
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", REPLAYER, folder, str(lake), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    time.sleep(1.0)  # let the three import; they then start within a millisecond of `go`
    go.touch()
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        files, failed = (int(x) for x in out.split())
        assert failed == 0
        reports.append(files)
    assert sum(reports) == total, reports
    assert pending(folder) == []
    assert counts(lake) == expected(30)


# A replay into an s3:// lake that is killed (SIGKILL, by itself) right after its second PUT of
# a data file and before it deletes that file from the spool.
KILLED_REMOTE_REPLAY = textwrap.dedent("""
    import os, signal, sys
    from xray_lake.storage import object_store
    real_put = object_store.Store.put
    copied = []
    def put_then_die(self, rel, data):
        real_put(self, rel, data)
        if rel.endswith(".parquet"):
            copied.append(rel)
            if len(copied) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
    object_store.Store.put = put_then_die
    from xray_lake.cli.app import app
    app(["replay", "--spool", sys.argv[1]])
""")


def _dead_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens once closed


@pytest.mark.slow
def test_on_s3_a_killed_replay_then_compact_then_replay_never_doubles(
        s3: S3Server, tmp_path: Path) -> None:
    root, spool = f"s3://{BUCKET}/once-{secrets.token_hex(4)}", tmp_path / "spool"
    down = {**s3.storage_options, "endpoint_url": _dead_endpoint(), "connect_timeout": "1"}
    xr.configure(root=root, spool_dir=str(spool), storage_options=down)
    for i in range(3):  # the store is unreachable: three files per table go to the spool
        s3_record(2, "p", "2024-01-01", prefix=f"f{i}")
        assert xr.flush(30), xr.stats()
    xr.configure(root=f"s3://{BUCKET}/elsewhere", storage_options=s3.storage_options)
    folder = spool_root(str(spool), root)
    total = len(pending(folder))
    assert total == 9

    run_killed(KILLED_REMOTE_REPLAY, spool, env={**os.environ, **s3.env})
    in_lake = sorted(e.rel for e in open_store(root).walk("candidates"))
    assert len(in_lake) == 2 and len(pending(folder)) == total - 1  # one is in both

    report = xr.compact(root, before="2999-01-01")  # takes over the dead replayer's lock
    assert report.errors == () and (report.files_in, report.files_out) == (2, 1)
    partition = in_lake[0].rpartition("/")[0]
    assert merged_names(root, partition) == {rel.rpartition("/")[2] for rel in in_lake}

    replay_the_rest(spool, folder, total)
    with xr.Lake(root) as lake:
        assert s3_counts(lake) == s3_expected(6)  # no candidate row came back twice
