"""The dead-letter folder: records the writer could not encode, set aside beside the spool.

One record per JSON file, `<spool folder of the lake>/_dead_letter/<UTC time>-<owner>.json`,
written under a temp name and renamed, so a reader never sees half a file. The file says
what failed (`error`), where the record belongs (`label`, `date`, `run_id`, `stage`, `table`)
and holds the record itself as plain JSON (`record`: text exact, lone surrogates escaped
by JSON itself; objects JSON cannot hold as their type and repr). Nothing replays them: a
dead letter is for a person to read, fix the cause, and delete. `xray-lake doctor` lists them.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from xray_lake.storage.spool import spool_folder, spool_root
from xray_lake.storage.tempfiles import is_temp_file, owner_tag, temp_file_name

DEAD_LETTER_DIR = "_dead_letter"
FORMAT = "xray-lake dead letter 1"


def folder(spool_dir: str, lake_root: str, *, create: bool = True) -> str:
    """The dead-letter folder of one lake root: inside its spool folder (which `create`s it
    with its marker), never replayed."""
    spool = spool_root(spool_dir, lake_root) if create else spool_folder(spool_dir, lake_root)
    return os.path.join(spool, DEAD_LETTER_DIR)


def write(target: str, letter: dict[str, Any], *, seq: int = 0) -> tuple[str, int]:
    """Write one dead letter into folder `target`; returns (path, bytes written).

    `letter` must already be plain JSON (see writer/dead_letter.py). Raises OSError when the
    folder cannot be written: the caller then counts the record as lost.
    """
    os.makedirs(target, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = f"{stamp}-{owner_tag()}-{seq:06d}.json"
    data = json.dumps({"format": FORMAT, **letter}, ensure_ascii=True, indent=1,
                      allow_nan=True).encode("ascii")
    path = os.path.join(target, name)
    temp = os.path.join(target, temp_file_name(name))
    try:
        with open(temp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return path, len(data)


@dataclass
class DeadLetter:
    """One set-aside record as `doctor` lists it."""

    path: str
    error: str
    label: str | None = None
    run_id: str | None = None
    stage: str | None = None
    table: str | None = None

    def summary(self) -> str:
        where = ", ".join(f"{k} {v!r}" for k, v in (("label", self.label), ("run", self.run_id),
                                                     ("stage", self.stage)) if v is not None)
        return f"{self.error}" + (f" ({where})" if where else "")


def listing(target: str) -> Iterator[DeadLetter]:
    """The dead letters in folder `target`, oldest first (an unreadable one says so)."""
    if not os.path.isdir(target) or os.path.islink(target):
        return
    for name in sorted(os.listdir(target)):
        path = os.path.join(target, name)
        if is_temp_file(name) or not name.endswith(".json") or os.path.islink(path):
            continue
        try:
            with open(path, encoding="ascii") as fh:
                doc = json.load(fh)
            yield DeadLetter(path, str(doc.get("error")), _text(doc.get("label")),
                             _text(doc.get("run_id")), _text(doc.get("stage")),
                             _text(doc.get("table")))
        except (OSError, ValueError, AttributeError) as exc:
            yield DeadLetter(path, f"unreadable dead letter ({type(exc).__name__}: {exc})")


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
