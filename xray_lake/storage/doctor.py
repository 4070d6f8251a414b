"""Lake health check: finds files readers would choke on and stale temp files; quarantines with fix.

Readers glob `<table>/*/*/*.parquet`, so one unreadable footer, one file whose columns have
other types, or one folder that is not `label=…/date=YYYY-MM-DD` breaks every query of its
table. `scan(root, fix=True)` moves such files to `<root>/_quarantine/<same relative path>`
(out of every glob, nothing deleted) and deletes temp files whose writer is gone. It also
lists the dead letters of the lake (records the writer could not encode, set aside beside the
spool, storage/dead_letters.py): never fixed, they wait for a person to read and delete them.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from xray_lake.config import get_settings
from xray_lake.records.schema import SCHEMA_VERSION, SCHEMAS
from xray_lake.storage import confine, dead_letters
from xray_lake.storage.compaction.protocol import COMPACTION_DIR
from xray_lake.storage.layout import TABLES, unescape_label
from xray_lake.storage.s3_clients import is_remote
from xray_lake.storage.tempfiles import is_temp_file, stale_reason, why_stale

QUARANTINE = "_quarantine"

UNREADABLE = "unreadable"
FOREIGN_SCHEMA = "foreign_schema"
BAD_PARTITION = "bad_partition"
STALE_TEMP = "stale_temp"
LINK = "link"
"""A symbolic link in the lake's folders: never followed by any operation, never fixed (the
link may be someone's on purpose); reported so that its owner moves the data in."""
DEAD_LETTER = "dead_letter"
"""A record the writer could not encode, set aside in the dead-letter folder beside the spool
(its path is absolute: it is not in the lake). Never fixed: read it, fix the cause, delete it."""

_VERSION = re.compile(r"part-v([0-9]+)-")
_DATE = re.compile(r"date=([0-9]{4}-[0-9]{2}-[0-9]{2})")


@dataclass
class Problem:
    """One file a reader would trip on (or a temp file nobody will finish), and what fix did."""

    kind: str
    path: str  # relative to the root, '/'-joined
    detail: str
    fixed: bool = False
    action: str = ""


@dataclass
class DoctorReport:
    """What `scan` found: files checked, problems (fixed or not), temp files still being written."""

    root: str
    files_checked: int = 0
    temps_in_use: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def remaining(self) -> list[Problem]:
        return [p for p in self.problems if not p.fixed]

    @property
    def ok(self) -> bool:
        return not self.remaining

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "ok": self.ok,
            "files_checked": self.files_checked,
            "temps_in_use": self.temps_in_use,
            "problems": [asdict(p) for p in self.problems],
        }


def scan(root: str, *, fix: bool = False,
         progress: Callable[[int, int], None] | None = None,
         spool_dir: str | None = None) -> DoctorReport:
    """Check every file under `<root>/{runs,stages,candidates}`; with `fix`, repair what it can.

    `progress(done, total)` is called after each file. On object storage (`s3://`) bad files
    are quarantined by a server-side copy and a delete. Dead letters are looked for in the
    spool of `spool_dir` (the configured one by default).
    """
    report = _scan_remote(root, fix, progress) if is_remote(root) else _scan_local(root, fix,
                                                                                  progress)
    folder = dead_letters.folder(spool_dir or get_settings().spool_dir, root, create=False)
    for letter in dead_letters.listing(folder):
        report.problems.append(Problem(DEAD_LETTER, letter.path, letter.summary()))
    return report


def _scan_local(root: str, fix: bool,
                progress: Callable[[int, int], None] | None) -> DoctorReport:
    report = DoctorReport(root=root)
    for rel, target, leaves in confine.links(root):
        where = "out of the lake" if leaves else "inside the lake"
        report.problems.append(Problem(
            LINK, rel, f"symbolic link to {target} ({where}): never followed, so whatever it "
                       "points at is not part of the lake; move the files in and remove it"))
    files = list(_files(root))
    now = time.time()
    for done, (table, rel) in enumerate(files, 1):
        path = os.path.join(root, rel)
        name = os.path.basename(rel)
        if is_temp_file(name):
            reason = stale_reason(path, now=now)
            if reason is not None:
                problem = Problem(STALE_TEMP, _slashed(rel), reason)
                if fix:
                    _delete(path, problem)
                report.problems.append(problem)
            else:
                report.temps_in_use += 1
        elif name.endswith(".parquet"):
            report.files_checked += 1
            found = check_file(root, table, rel)
            if found is not None:
                if fix:
                    _quarantine(root, rel, found)
                report.problems.append(found)
        if progress is not None:
            progress(done, len(files))
    _scan_compaction_temps(root, fix, report, now)
    return report


def _scan_compaction_temps(root: str, fix: bool, report: DoctorReport, now: float) -> None:
    """Temp files a killed compactor or replayer left in `_compaction/` (lock files are
    written under a temp name first): stale ones are reported, and deleted with fix."""
    folder = os.path.join(root, COMPACTION_DIR)
    if os.path.islink(folder) or not os.path.isdir(folder):
        return  # a link is reported above and never followed
    for name in sorted(os.listdir(folder)):
        if not is_temp_file(name):
            continue
        reason = stale_reason(os.path.join(folder, name), now=now)
        if reason is None:
            report.temps_in_use += 1
            continue
        problem = Problem(STALE_TEMP, f"{COMPACTION_DIR}/{name}", reason)
        if fix:
            _delete(os.path.join(folder, name), problem)
        report.problems.append(problem)


def check_file(root: str, table: str, rel: str,
               opener: Callable[[str], Any] | None = None) -> Problem | None:
    """The first problem of one data file (partition folders, footer, schema), or None.

    `opener(rel)` opens the file (object storage); by default it is read from the disk.
    """
    where = _slashed(rel)
    bad_folder = partition_problem(rel)
    if bad_folder is not None:
        return Problem(BAD_PARTITION, where, bad_folder)
    try:
        if opener is None:
            schema = pq.ParquetFile(os.path.join(root, rel)).schema_arrow
        else:
            with opener(rel) as fh:
                schema = pq.ParquetFile(fh).schema_arrow
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for broken footers
        return Problem(UNREADABLE, where, _first_line(exc))
    version = _VERSION.match(os.path.basename(rel))
    current = version is None or int(version.group(1)) >= SCHEMA_VERSION
    mismatch = schema_problem(schema, table, current=current)
    if mismatch is not None:
        return Problem(FOREIGN_SCHEMA, where, mismatch)
    return None


def partition_problem(rel: str) -> str | None:
    """Why `<table>/<a>/<b>/<file>` is not `label=<escaped>/date=<YYYY-MM-DD>`, or None."""
    parts = rel.split(os.sep)
    if len(parts) != 4:
        return f"not in a label=…/date=… folder ({len(parts) - 2} folder levels instead of 2)"
    label, date = parts[1], parts[2]
    if not label.startswith("label="):
        return f"folder {label!r} is not label=…"
    try:
        unescape_label(label.removeprefix("label="))
    except ValueError as exc:
        return f"folder {label!r}: {exc}"
    match = _DATE.fullmatch(date)
    if match is None:
        return f"folder {date!r} is not date=YYYY-MM-DD"
    try:
        dt.date.fromisoformat(match.group(1))
    except ValueError:
        return f"folder {date!r} is not a calendar date"
    return None


def schema_problem(schema: pa.Schema, table: str, *, current: bool = True) -> str | None:
    """Why a file's columns cannot be read as `table`, or None.

    Every column of the table must be there with its type (a reader binds the whole glob to
    one file's columns, so one file without a column fails the query); more columns are
    allowed (added later). Files of an older schema version (`current=False`) may lack
    columns added since, but not run_id.
    """
    expected = SCHEMAS[table]
    if "run_id" not in schema.names:
        return f"no run_id column: not a {table} file (columns: {', '.join(schema.names[:6])})"
    for want in expected:
        index = schema.get_field_index(want.name)
        if index < 0:
            if current:
                return f"column {want.name!r} is missing"
            continue
        got = schema.field(index).type
        if not got.equals(want.type):
            return f"column {want.name!r} is {got}, expected {want.type}"
    return None


def _files(root: str) -> Iterator[tuple[str, str]]:
    """(table, path relative to root) of every file under the table folders, sorted."""
    for table in TABLES:
        base = os.path.join(root, table)
        if os.path.islink(base):
            continue  # reported by `confine.links`, never followed
        for dirpath, dirs, names in os.walk(base):  # (os.walk does not enter linked folders)
            dirs.sort()
            for name in sorted(names):
                if not os.path.islink(os.path.join(dirpath, name)):
                    yield table, os.path.relpath(os.path.join(dirpath, name), root)


def _quarantine(root: str, rel: str, problem: Problem) -> None:
    """Move a bad file under `_quarantine/`, keeping its relative path (never overwriting)."""
    target = os.path.join(root, QUARANTINE, rel)
    link = confine.through_link(root, os.path.join(QUARANTINE, rel))
    if link is not None:
        problem.action = f"could not quarantine: {link} is a symbolic link"
        return
    n = 0
    while os.path.lexists(target):
        n += 1
        target = os.path.join(root, QUARANTINE, f"{rel}.{n}")
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(os.path.join(root, rel), target)
    except OSError as exc:
        problem.action = f"could not quarantine: {exc.strerror or exc}"
        return
    problem.fixed = True
    problem.action = f"moved to {_slashed(os.path.relpath(target, root))}"


def _delete(path: str, problem: Problem) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass  # its writer finished or another doctor removed it
    except OSError as exc:
        problem.action = f"could not delete: {exc.strerror or exc}"
        return
    problem.fixed = True
    problem.action = "deleted"


def _scan_remote(root: str, fix: bool,
                 progress: Callable[[int, int], None] | None) -> DoctorReport:
    """`scan` on object storage: one LIST per table, footers read by ranged GETs."""
    from xray_lake.storage.object_store import open_store

    store = open_store(root)
    report = DoctorReport(root=root)
    files = [(table, entry) for table in TABLES for entry in store.walk(table)]
    now = time.time()
    for done, (table, entry) in enumerate(files, 1):
        if is_temp_file(entry.name):  # xray-lake writes none here; copied from a local lake?
            reason = why_stale(entry.name, entry.mtime, now)
            if reason is None:
                report.temps_in_use += 1
            else:
                problem = Problem(STALE_TEMP, entry.rel, reason)
                if fix:
                    _remote_fix(problem, "deleted", partial(store.delete, entry.rel))
                report.problems.append(problem)
        elif entry.name.endswith(".parquet"):
            report.files_checked += 1
            found = check_file(root, table, entry.rel, store.open_input)
            if found is not None:
                if fix:
                    _remote_quarantine(store, entry.rel, found)
                report.problems.append(found)
        if progress is not None:
            progress(done, len(files))
    return report


def _remote_quarantine(store: Any, rel: str, problem: Problem) -> None:
    """Copy a bad object under `_quarantine/` (never over another), then delete it."""
    target = f"{QUARANTINE}/{rel}"
    n = 0
    while store.exists(target):
        n += 1
        target = f"{QUARANTINE}/{rel}.{n}"

    def move() -> None:
        store.copy(rel, target)
        store.delete(rel)

    _remote_fix(problem, f"moved to {target}", move)


def _remote_fix(problem: Problem, action: str, do: Callable[[], None]) -> None:
    try:
        do()
    except OSError as exc:
        problem.action = f"could not fix: {_first_line(exc)}"
        return
    problem.fixed = True
    problem.action = action


def _slashed(rel: str) -> str:
    return rel.replace(os.sep, "/")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
