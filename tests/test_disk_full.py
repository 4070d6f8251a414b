"""A lake on a full disk (a real ENOSPC from a tiny tmpfs): records spool, then land exactly once."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

import xray_lake as xr


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here to make a real ENOSPC: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_disk_full_lake_spools_and_replays_exactly_once_when_space_is_back(
    tiny_disk: Path, tmp_path: Path
) -> None:
    lake = tiny_disk / "lake"
    xr.configure(root=str(lake), spool_dir=str(tmp_path / "spool"), fsync=False)
    for i in range(20):
        with xr.run("full", run_id=f"r{i}") as run, run.stage("s", type="retrieval") as st:
            st.output([{"id": j, "text": secrets.token_hex(100)} for j in range(100)])
    assert xr.flush(30) is True  # durable: what the disk refused is in the spool
    stats = xr.stats()
    assert stats["write_failures"] >= 1
    assert sum(stats["spooled_rows"].values()) > 0
    # space comes back (the same filesystem, grown): the writer drains the spool
    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_disk)], check=True)
    time.sleep(1.1)  # past the first backoff
    with xr.run("full", run_id="after"):
        pass
    assert xr.flush(30) is True
    glob = f"{lake}/{{table}}/*/*/*.parquet"
    runs = duckdb.sql(f"select count(*), count(distinct run_id) from read_parquet('{glob.format(table='runs')}')").fetchall()[0]
    rows = duckdb.sql(f"select count(*) from read_parquet('{glob.format(table='candidates')}')").fetchall()[0][0]
    assert runs == (21, 21)
    assert rows == 2000
    assert not list((tmp_path / "spool").rglob("part-*.parquet"))
