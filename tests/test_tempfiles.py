"""Temp files and their owners: one rule for names, liveness and staleness (storage/tempfiles.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from xray_lake.storage import tempfiles
from xray_lake.storage.tempfiles import (
    STALE_AFTER_S,
    host_tag,
    owner_gone,
    owner_pid,
    owner_tag,
    pid_alive,
    temp_file_name,
    why_stale,
)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_an_owner_tag_names_this_process_and_is_read_back_from_a_temp_name() -> None:
    tag = owner_tag()
    assert tag.startswith(f"{host_tag()}-{os.getpid()}-")
    name = temp_file_name(f"part-v2-w-00000001.parquet.{tag}")
    assert owner_pid(name) == os.getpid()
    assert why_stale(name, time.time(), time.time()) is None  # its owner runs


def test_a_temp_of_a_dead_process_on_this_host_is_stale_at_once() -> None:
    pid = dead_pid()
    name = temp_file_name(f"x.parquet.{host_tag()}-{pid}-0123abcd")
    reason = why_stale(name, time.time(), time.time())
    assert reason is not None and str(pid) in reason


def test_a_temp_of_another_host_is_stale_only_once_old() -> None:
    name = temp_file_name(f"x.parquet.other-host-{dead_pid()}-0123abcd")
    now = time.time()
    assert owner_pid(name) is None
    assert why_stale(name, now - 60, now) is None
    assert why_stale(name, now - STALE_AFTER_S - 1, now) is not None


def test_pid_liveness() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(dead_pid())
    assert not pid_alive(0) and not pid_alive(-5)
    assert not pid_alive(2**62)  # beyond any pid: no such process, not an error


def test_a_lock_owner_is_gone_only_on_this_host() -> None:
    gone = dead_pid()
    assert owner_gone(socket.gethostname(), gone)
    assert owner_gone(host_tag(), gone)
    assert not owner_gone(socket.gethostname(), os.getpid())
    assert not owner_gone("some-other-host", gone)


def test_host_tag_is_one_safe_path_component() -> None:
    assert host_tag("web 1/eu:3") == "web_1_eu_3"
    assert host_tag("") == "host"
    assert len(host_tag("h" * 100)) == 32


def test_clean_stale_temps_removes_only_stale_temps_and_never_follows_a_link(
        tmp_path: Path) -> None:
    dead = tmp_path / "a" / temp_file_name(f"f.{host_tag()}-{dead_pid()}-0123abcd")
    live = tmp_path / temp_file_name(f"f.{owner_tag()}")
    data = tmp_path / "part-1.parquet"
    dead.parent.mkdir()
    for path in (dead, live, data):
        path.write_bytes(b"x")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    target = outside / temp_file_name(f"g.{host_tag()}-{dead_pid()}-0123abcd")
    target.write_bytes(b"x")
    (tmp_path / target.name).symlink_to(target)
    assert tempfiles.clean_stale_temps(str(tmp_path)) == [str(dead)]
    assert live.exists() and data.exists() and target.exists()
