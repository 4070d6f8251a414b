"""Keeping storage inside the lake root: symbolic links in a local lake are never followed.

A lake's folders (`<table>/label=…/date=…`, `_compaction`, `_merged`, `_quarantine`) are made by
xray-lake and are never links. A link there was put by someone else, and following it would
let compaction delete and write files, replay copy files, doctor move files and readers read
files outside the lake (`runs/label=archive -> /elsewhere`). So every operation treats a link
as absent: listings skip it, writes refuse a path through one, and `doctor` reports each
(`links`). The root itself may be a link (`/data/lake -> /mnt/disk/lake`): paths are checked
from the root down, never above it. Object storage has no links.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from xray_lake.storage.layout import TABLES

SPECIAL_DIRS = ("_compaction", "_merged", "_quarantine", "_fields")


def through_link(root: str, rel: str) -> str | None:
    """The first component of `rel` (a '/'- or os.sep-joined path under `root`) that is a
    symbolic link, as a path relative to the root; None when there is none (or `rel` is
    missing from some point on: what does not exist yet is created as a real folder)."""
    path = root
    parts = [p for p in rel.replace(os.sep, "/").split("/") if p]
    for i, part in enumerate(parts):
        path = os.path.join(path, part)
        try:
            if os.path.islink(path):
                return "/".join(parts[:i + 1])
        except OSError:
            return None
    return None


def check_inside(root: str, rel: str) -> None:
    """Raise `OSError` when writing or deleting `<root>/<rel>` would go through a link."""
    link = through_link(root, rel)
    if link is not None:
        raise OSError(f"{link} in the lake at {root} is a symbolic link "
                      f"(to {_target(os.path.join(root, link))}): xray-lake never follows "
                      "links in a lake; remove it (`xray-lake doctor` lists them)")


def subdirs(path: str) -> list[str]:
    """Names of the folders in `path` that are real folders (no links), not hidden."""
    try:
        return [e.name for e in os.scandir(path)
                if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def files(path: str) -> list[str]:
    """Names of the regular files in `path` (links skipped)."""
    try:
        return [e.name for e in os.scandir(path) if e.is_file(follow_symlinks=False)]
    except OSError:
        return []


def links(root: str) -> Iterator[tuple[str, str, bool]]:
    """(path relative to the root, link target, leaves the lake) of every link in the lake's
    folders: table, label and date folders, the files in them, and the special folders."""
    real_root = os.path.realpath(root)
    for top in (*TABLES, *SPECIAL_DIRS):
        yield from _links_under(root, real_root, top, 3 if top in TABLES else 1)


def _links_under(root: str, real_root: str, rel: str,
                 depth: int) -> Iterator[tuple[str, str, bool]]:
    path = os.path.join(root, rel)
    if os.path.islink(path):
        yield rel, _target(path), not _inside(real_root, path)
        return
    if depth == 0:
        return
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        child = f"{rel}/{entry.name}"
        if entry.is_symlink():
            yield child, _target(entry.path), not _inside(real_root, entry.path)
        elif entry.is_dir(follow_symlinks=False):
            yield from _links_under(root, real_root, child, depth - 1)


def _inside(real_root: str, path: str) -> bool:
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def _target(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"
