"""The compaction protocol on disk: folders, markers, epoch and merged names that readers share.

Readers (`storage.catalog`, `query.lake`) and replay (`storage.spool`) import this module and
nothing else of the package: it loads no pyarrow and no compactor.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass

from xray_lake.errors import XrayLakeError
from xray_lake.storage.layout import TABLES, VERSION_TOKEN, unescape_label
from xray_lake.storage.s3_clients import is_remote

COMPACTION_DIR = "_compaction"
EPOCH_FILE = "epoch"
EPOCH_PREFIX = f"{EPOCH_FILE}-"
"""On object storage each epoch bump is an empty object `_compaction/epoch-<time>-<random>`."""
MERGED_DIR = "_merged"
"""`<root>/_merged/<partition key>`: the names of the files compaction merged away."""
PENDING = ".pending.json"
COMMITTED = ".committed.json"
LOCK_SUFFIX = ".lock"
LOCK_STALE_S = 3600.0
"""A lock untouched (locally) or unrenewed (object storage) for this long may be taken over."""

DATA_FILE = re.compile(rf"^part-v({VERSION_TOKEN})-.+\.parquet$")
"""A published data file; group 1 is its version token (files of one token merge together)."""
COMPACT_TEMP = re.compile(rf"^\.part-v{VERSION_TOKEN}-compact-.+\.parquet\.tmp$")
"""The temp file of a local merge, before it is renamed into place."""
DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


@dataclass(frozen=True, slots=True, order=True)
class Partition:
    """One table x label x date folder."""

    table: str
    value: str
    """The escaped label, as in the folder name."""
    date: str

    @property
    def rel(self) -> str:
        return f"{self.table}/label={self.value}/date={self.date}"

    @property
    def label(self) -> str:
        try:
            return unescape_label(self.value)
        except ValueError:
            return self.value

    @property
    def key(self) -> str:
        """`<table>.<sha1 of the label folder>.<date>`: names its lock and merged-names file."""
        digest = hashlib.sha1(self.value.encode("utf-8")).hexdigest()
        return f"{self.table}.{digest}.{self.date}"


def partition_of(rel: str) -> Partition | None:
    """The partition of `<table>/label=<value>/date=<date>`, or None if `rel` is not one."""
    parts = rel.split("/")
    if len(parts) != 3 or parts[0] not in TABLES or not parts[1].startswith("label=") \
            or not parts[2].startswith("date=") or DATE.match(parts[2][5:]) is None:
        return None
    return Partition(parts[0], parts[1].removeprefix("label="), parts[2].removeprefix("date="))


def compaction_dir(root: str) -> str:
    return os.path.join(root, COMPACTION_DIR)


def _remote_names(root: str, rel: str) -> list[str]:
    from xray_lake.storage.object_store import open_store

    return [e.name for e in open_store(root).listdir(rel)[1]]


def compaction_epoch(root: str) -> int:
    """A number that changes whenever a merge is about to make a file visible (0 if never).

    Locally the size of `_compaction/epoch` (one byte appended per merge). Object stores
    cannot append, and a rewritten object's size and second-resolution mtime may not change:
    each bump adds a uniquely named object, and the epoch is a digest of their names.
    """
    if is_remote(root):
        names = sorted(n for n in _remote_names(root, COMPACTION_DIR)
                       if n.startswith(EPOCH_PREFIX))
        if not names:
            return 0
        return int(hashlib.sha1("\n".join(names).encode()).hexdigest()[:15], 16) or 1
    try:
        return os.stat(os.path.join(root, COMPACTION_DIR, EPOCH_FILE)).st_size
    except OSError:
        return 0


def marker_names(root: str) -> frozenset[str]:
    """Names of the pending and committed markers: one `listdir`, cheap enough per query."""
    try:
        if is_remote(root):
            names = _remote_names(root, COMPACTION_DIR)
        else:
            names = os.listdir(os.path.join(root, COMPACTION_DIR))
    except OSError:
        return frozenset()
    return frozenset(
        n for n in names if not n.startswith(".") and n.endswith((PENDING, COMMITTED))
    )


def wait_until_idle(root: str, timeout: float) -> bool:
    """Wait up to `timeout` s until no partition is locked by a compactor; True if none is.

    Readers call it before retrying a query whose files were merged away, so the next listing
    is not taken in the middle of a merge that is about to delete what it lists.
    """
    deadline = time.monotonic() + timeout
    remote = is_remote(root)
    while True:
        try:
            if remote:
                names = _remote_names(root, COMPACTION_DIR)
            else:
                names = os.listdir(os.path.join(root, COMPACTION_DIR))
        except OSError:
            return True
        if not any(n.endswith(LOCK_SUFFIX) and not n.startswith(".") for n in names):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05 if remote else 0.005)


@dataclass(frozen=True, slots=True)
class Marker:
    """One merge in flight: its visible target and the sources it replaces (paths under root)."""

    name: str
    committed: bool
    table: str
    label: str
    date: str
    partition: str
    target: str
    sources: tuple[str, ...]

    @property
    def job(self) -> str:
        """The merge this marker belongs to (its pending and committed markers share it)."""
        return self.name.removesuffix(COMMITTED if self.committed else PENDING)


def read_marker(root: str, name: str) -> Marker | None:
    """The marker `name`, or None if it vanished (committed or finished since it was listed)."""
    path = os.path.join(root, COMPACTION_DIR, name)
    try:
        if is_remote(root):
            from xray_lake.storage.object_store import open_store

            text = open_store(root).read(f"{COMPACTION_DIR}/{name}")
            if text is None:
                return None
            raw = json.loads(text)
        else:
            with open(path, encoding="utf-8") as fh:
                raw = json.load(fh)
        marker = Marker(name, name.endswith(COMMITTED), str(raw["table"]), str(raw["label"]),
                        str(raw["date"]), str(raw["partition"]), str(raw["target"]),
                        tuple(str(s) for s in raw["sources"]))
        for rel in (marker.target, *marker.sources):  # recovery deletes them: stay in the lake
            folder, _, file_name = rel.rpartition("/")
            if folder != marker.partition or not DATA_FILE.match(file_name) or \
                    partition_of(marker.partition) is None:
                raise ValueError(f"{rel!r} is not a data file of partition {marker.partition!r}")
        return marker
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise XrayLakeError(
            f"unreadable compaction marker {path}: {exc}. Markers are written atomically, so "
            "this one was edited by hand: delete it if no compaction is running."
        ) from None


# --- merged names: exactly once across compaction ------------------------------------------


def merged_path(root: str, part: Partition) -> str:
    """Local lakes: `_merged/<partition key>`, one name a line, appended to (kept out of
    `_compaction/`, which holds only what a running compaction needs)."""
    return os.path.join(root, MERGED_DIR, part.key)


def merged_object(part: Partition, job: str) -> str:
    """Object storage: `_merged/<partition key>/<job>`, the names one merge replaced (objects
    cannot be appended to, so each merge writes its own; a retried job rewrites the same)."""
    return f"{MERGED_DIR}/{part.key}/{job}"


def merged_names(root: str, partition_rel: str) -> frozenset[str]:
    """Names of the files compaction merged away from a partition (`<table>/label=/date=`).

    A spooled file of that name was already in the lake once and is in a merged file now:
    replay deletes it instead of copying it back (storage.spool)."""
    part = partition_of(partition_rel)
    if part is None:
        return frozenset()
    if is_remote(root):
        from xray_lake.storage.object_store import open_store

        store = open_store(root)
        names: set[str] = set()
        for entry in store.walk(f"{MERGED_DIR}/{part.key}"):
            data = store.read(entry.rel)
            if data is not None:
                names.update(line.strip() for line in data.decode().splitlines() if line.strip())
        return frozenset(names)
    try:
        with open(merged_path(root, part), encoding="utf-8") as fh:
            return frozenset(line.strip() for line in fh if line.strip())
    except FileNotFoundError:
        return frozenset()
