"""Temp files and the processes that own them: names, owner tags, pid liveness, staleness.

Every file xray-lake writes is first written under a temp name (``.<final>.tmp``), which no
reader's ``*.parquet`` glob matches, then renamed into place. A temp name that can be left
behind by a killed process carries its owner, ``<host tag>-<pid>-<8 hex>``, so that `doctor`,
replay and compaction can tell a temp (or a lock) whose process is gone on this host from one
still being written. This module holds that whole rule; it imports nothing from xray-lake, so
the writer, the spool, compaction and doctor all use it without importing each other.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time

STALE_AFTER_S = 3600.0
"""A temp file of another host (or of a live pid) untouched this long is abandoned."""

_TEMP_PREFIX = "."
_TEMP_SUFFIX = ".tmp"
# `<host tag>-<pid>-<8 hex>`; the last such group in a temp name names its owner.
_OWNER = r"{host}-([0-9]+)-[0-9a-f]{{8}}"


def temp_file_name(final_name: str) -> str:
    """Return ``.<final_name>.tmp``, the name to write before an atomic rename to ``final_name``.

    Readers cannot see half-written files: the ``.tmp`` suffix does not match ``*.parquet``, and
    Spark/Hive skip names starting with '.'.
    """
    if not final_name or "/" in final_name or "\\" in final_name or final_name in (".", ".."):
        raise ValueError(f"final_name must be a plain file name, got {final_name!r}")
    return f"{_TEMP_PREFIX}{final_name}{_TEMP_SUFFIX}"


def is_temp_file(name: str) -> bool:
    """Tell whether a file name, or the last component of a '/'-path, is a temp file to skip."""
    base = name.rsplit("/", 1)[-1]
    return (
        len(base) > len(_TEMP_PREFIX) + len(_TEMP_SUFFIX)
        and base.startswith(_TEMP_PREFIX)
        and base.endswith(_TEMP_SUFFIX)
    )


def host_tag(hostname: str | None = None) -> str:
    """A host name (this host's by default) as it appears in file names and writer ids: at
    most 32 of ``[A-Za-z0-9_.-]``, so it is one safe path component."""
    name = socket.gethostname() if hostname is None else hostname
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:32] or "host"


def owner_tag(token: str | None = None) -> str:
    """``<host tag>-<pid>-<8 hex>``: who writes a temp file, put in its name so that a temp
    of a killed process is recognised (`token` gives the hex part, else it is random)."""
    suffix = (token or os.urandom(4).hex())[:8]
    return f"{host_tag()}-{os.getpid()}-{suffix}"


def pid_alive(pid: int) -> bool:
    """Whether a process of this id runs on this host (one owned by another user counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, OverflowError):  # e.g. a pid beyond the platform's range (a name
        return False  # copied from another system): no such process here
    return True


def owner_gone(host: str, pid: int) -> bool:
    """True when `host` is this host (its name or its tag) and process `pid` is gone: a lock or
    temp recorded by that owner will never be finished or released by it."""
    here = socket.gethostname()
    return host in (here, host_tag(here)) and not pid_alive(pid)


def owner_pid(name: str) -> int | None:
    """The pid of the process writing a temp file, if that process runs on this host."""
    found = re.findall(_OWNER.format(host=re.escape(host_tag())), name)
    return int(found[-1]) if found else None


def why_stale(name: str, mtime: float | None, now: float) -> str | None:
    """Why nobody will finish the temp file `name` last modified at `mtime` (its owner on this
    host is gone, or it is over `STALE_AFTER_S` old), or None while it may still be written."""
    owner = owner_pid(name)
    if owner is not None and not pid_alive(owner):
        return f"temp file of pid {owner} on this host, which is gone (killed mid-write)"
    if mtime is not None and now - mtime > STALE_AFTER_S:
        return f"temp file untouched for {(now - mtime) / 3600:.1f} hours"
    return None


def stale_reason(path: str, *, now: float | None = None) -> str | None:
    """`why_stale` for a local file (None once it has been renamed into place)."""
    try:
        mtime = os.stat(path).st_mtime
    except FileNotFoundError:
        return None  # renamed into place meanwhile
    return why_stale(os.path.basename(path), mtime, time.time() if now is None else now)


def is_stale_temp(path: str, *, now: float | None = None) -> bool:
    """A temp file nobody will finish: its writer (on this host) is dead, or it is over an hour old."""
    return stale_reason(path, now=now) is not None


def clean_stale_temps(folder: str) -> list[str]:
    """Delete the stale temp files under `folder` (recursively, never through a link);
    returns the paths removed."""
    removed: list[str] = []
    now = time.time()
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            path = os.path.join(dirpath, name)
            if is_temp_file(name) and not os.path.islink(path) and is_stale_temp(path, now=now):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    removed.append(path)
    return removed
