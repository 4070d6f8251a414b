"""Partition locks: one compactor (or replayer) per partition, on a local disk or an object store.

Locally a lock is a file created exclusively (a written temp file hard-linked into place).
Object stores have no exclusive create: a lock is created with `If-None-Match: *` and taken
over or renewed with `If-Match: <ETag>`, so only one creator or taker wins.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import secrets
import time

from xray_lake.storage.compaction.protocol import (
    COMPACTION_DIR,
    LOCK_STALE_S,
    LOCK_SUFFIX,
    Partition,
    compaction_dir,
    partition_of,
)
from xray_lake.storage.object_store import PreconditionFailed, Store, open_store
from xray_lake.storage.s3_clients import is_remote
from xray_lake.storage.tempfiles import host_tag, owner_gone, owner_tag


class LocalLock:
    """A partition lock: a file created exclusively, holding host, pid, time and a token."""

    def __init__(self, root: str, part: Partition) -> None:
        self.path = os.path.join(compaction_dir(root), part.key + LOCK_SUFFIX)
        self.token = secrets.token_hex(8)
        self.held = False

    def acquire(self) -> bool:
        """True when this process now holds the lock; False when a live compactor does."""
        for _ in range(2):  # one steal, then one retry
            if self._create():
                self.held = True
                return True
            content = self._read()
            if content is None:
                continue  # released between our attempt and the read
            if not self._stale(content) or not self._steal(content):
                return False
        return False

    def _create(self) -> bool:
        """Exclusive create with the content already in place (link of a written temp file)."""
        payload = json.dumps({"host": host_tag(), "pid": os.getpid(), "token": self.token,
                              "time": _dt.datetime.now(_dt.UTC).isoformat()})
        # named like every temp file (host-pid-random), so doctor removes one a kill left
        temp = f"{os.path.dirname(self.path)}/.{os.path.basename(self.path)}." \
            f"{owner_tag(self.token)}.tmp"
        with open(temp, "w", encoding="utf-8") as fh:
            fh.write(payload)
        try:
            os.link(temp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(temp)

    def _read(self) -> str | None:
        try:
            with open(self.path, encoding="utf-8") as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    def _stale(self, content: str) -> bool:
        try:
            age = time.time() - os.stat(self.path).st_mtime
        except FileNotFoundError:
            return True
        if age > LOCK_STALE_S:
            return True
        try:
            owner = json.loads(content)
            return owner_gone(str(owner["host"]), int(owner["pid"]))
        except (ValueError, KeyError, TypeError):
            return False

    def _steal(self, content: str) -> bool:
        """Move the stale lock aside; put it back if it changed since we judged it stale."""
        aside = f"{os.path.dirname(self.path)}/.{os.path.basename(self.path)}.{self.token}.stale"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return True
        try:
            with open(aside, encoding="utf-8") as fh:
                taken = fh.read()
            if taken != content:  # a live compactor re-created it meanwhile: give it back
                with contextlib.suppress(FileExistsError):
                    os.link(aside, self.path)
                return False
            return True
        finally:
            os.unlink(aside)

    def still_mine(self) -> bool:
        """Heartbeat: keep the lock fresh for others' staleness checks, and check ownership."""
        content = self._read()
        if content is None or self.token not in content:
            return False
        with contextlib.suppress(OSError):
            os.utime(self.path)
        return True

    def release(self) -> None:
        if self.held and self.still_mine():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        self.held = False


class RemoteLock:
    """A partition lock object; creation and take-over are conditional PUTs.

    With `conditional=False` (a store that ignores `If-None-Match`) the lock is advisory only:
    safe with one compactor per prefix (docs/object-storage.md).
    """

    def __init__(self, store: Store, part: Partition, conditional: bool) -> None:
        self.store = store
        self.rel = f"{COMPACTION_DIR}/{part.key}{LOCK_SUFFIX}"
        self.token = secrets.token_hex(8)
        self.conditional = conditional
        self.etag = ""
        self.held = False

    def _payload(self) -> bytes:
        now = time.time()
        return json.dumps({
            "host": host_tag(), "pid": os.getpid(), "token": self.token,
            "time": _dt.datetime.fromtimestamp(now, _dt.UTC).isoformat(),
            "expires": now + LOCK_STALE_S,
        }).encode()

    def acquire(self) -> bool:
        """True when this process now holds the lock; False when a live compactor does."""
        for _ in range(2):  # one take-over, then one retry
            if self._create():
                self.held = True
                return True
            got = self.store.read_tagged(self.rel)
            if got is None:
                continue  # released between our attempt and the read
            content, etag = got
            if not remote_lock_stale(content):
                return False
            if self._take_over(etag):
                self.held = True
                return True
            return False
        return False

    def _create(self) -> bool:
        if not self.conditional:
            if self.store.read_tagged(self.rel) is not None:
                return False
            self.store.put(self.rel, self._payload())
            return self._reads_mine()
        try:
            self.etag = self.store.create(self.rel, self._payload())
        except PreconditionFailed:
            return False
        return True

    def _take_over(self, etag: str) -> bool:
        if not self.conditional:
            self.store.put(self.rel, self._payload())
            return self._reads_mine()
        try:
            self.etag = self.store.replace(self.rel, self._payload(), etag)
        except PreconditionFailed:
            return False  # another compactor took it over first
        return True

    def _reads_mine(self) -> bool:
        got = self.store.read_tagged(self.rel)
        if got is None or self.token.encode() not in got[0]:
            return False
        self.etag = got[1]
        return True

    def still_mine(self) -> bool:
        """Heartbeat: renew the expiry, and check that nobody took the lock over."""
        got = self.store.read_tagged(self.rel)
        if got is None or self.token.encode() not in got[0]:
            return False
        return self._take_over(got[1])

    def release(self) -> None:
        if self.held:
            with contextlib.suppress(OSError, PreconditionFailed):
                if self.still_mine():
                    self.store.delete(self.rel)
        self.held = False


def remote_lock_stale(content: bytes) -> bool:
    """Expired (past its expiry, an hour after its last renewal), or its pid here is dead."""
    try:
        owner = json.loads(content)
        if time.time() > float(owner["expires"]):
            return True
        return owner_gone(str(owner["host"]), int(owner["pid"]))
    except (ValueError, KeyError, TypeError):
        return False


def supports_conditional_writes(store: Store) -> bool:
    """Whether the store refuses a second `If-None-Match: *` PUT of one key (AWS S3 since
    2024, SeaweedFS, MinIO do; some S3-compatible stores silently ignore the header)."""
    probe = f"{COMPACTION_DIR}/.probe-{secrets.token_hex(8)}"
    try:
        store.create(probe, b"1")
        try:
            store.create(probe, b"2")
        except PreconditionFailed:
            return True
        return False
    finally:
        store.delete(probe)


def partition_lock(root: str, partition_rel: str,
                   conditional: bool = True) -> LocalLock | RemoteLock | None:
    """The compaction lock of a partition (`<table>/label=/date=`), for replay to hold while
    it copies files in; None if `partition_rel` is not a partition. On object storage,
    `conditional` says whether the store honours conditional PUTs."""
    part = partition_of(partition_rel)
    if part is None:
        return None
    if is_remote(root):
        return RemoteLock(open_store(root), part, conditional)
    return LocalLock(root, part)
