"""An object-storage lake root: a `pyarrow.fs` filesystem plus a base path, addressed by '/' paths.

Local roots keep their own code paths (temp name + fsync + rename); a `Store` is what the
writer, replay, compaction, doctor and the readers use for `s3://` roots. Paths given to its
methods are relative to the root (`stages/label=a/date=2024-01-01/part-….parquet`) and are
never URI-decoded, so escaped labels (`%2F`) stay as they are.

Publishing is one PUT at the final name: an object is visible only once complete (a
multipart upload too, at its completion), so no temp name or rename is needed.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from xray_lake.config import get_settings
from xray_lake.storage.s3_clients import (
    S3Config,
    arrow_fs,
    fsspec_fs,
    is_remote,
    remember,
    split_root,
)


@dataclass(frozen=True, slots=True)
class Entry:
    """One object: its path under the root, size and last-modified time (epoch seconds)."""

    rel: str
    size: int
    mtime: float

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1]


class PreconditionFailed(Exception):
    """A conditional request lost: the object exists (create) or changed (replace)."""


class Store:
    """A remote lake root; every method takes paths relative to it."""

    def __init__(self, root: str, config: S3Config) -> None:
        self.root = root.rstrip("/")
        self.base = split_root(root)
        self.config = config

    @property
    def fs(self) -> pafs.FileSystem:
        return arrow_fs(self.config)

    def path(self, rel: str) -> str:
        """The filesystem path (`bucket/prefix/rel`) of `rel`."""
        return f"{self.base}/{rel}" if rel else self.base

    def uri(self, rel: str) -> str:
        """The `s3://` URI of `rel`, as DuckDB reads it."""
        return f"{self.root}/{rel}"

    # --- data plane (pyarrow) ------------------------------------------------------------

    def put(self, rel: str, data: bytes | pa.Buffer) -> None:
        """One PUT (or one multipart upload) at the final name: visible only when complete."""
        # The whole file is already in memory: one write() hands it over complete. Below
        # pyarrow's part size close() sends one PutObject; above, parts go up in the
        # background and close() completes the upload only if every part succeeded.
        out = self.fs.open_output_stream(self.path(rel))
        out.write(data)
        out.close()

    def read(self, rel: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""
        try:
            with self.fs.open_input_stream(self.path(rel)) as src:
                return bytes(src.read())
        except FileNotFoundError:
            return None

    def open_input(self, rel: str) -> Any:
        """A random-access file (for Parquet footers and column chunks)."""
        return self.fs.open_input_file(self.path(rel))

    def delete(self, rel: str) -> None:
        """Delete an object; a missing one is fine (another process got there first)."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self.path(rel))

    def copy(self, src: str, dst: str) -> None:
        """Server-side copy (no bytes through this process)."""
        self.fs.copy_file(self.path(src), self.path(dst))

    def exists(self, rel: str) -> bool:
        return bool(self.fs.get_file_info(self.path(rel)).type == pafs.FileType.File)

    def listdir(self, rel: str) -> tuple[list[str], list[Entry]]:
        """(sub-folder names, objects) directly under `rel`; nothing when it does not exist."""
        return self._list(rel, recursive=False)

    def walk(self, rel: str) -> list[Entry]:
        """Every object under `rel`, recursively (one paginated LIST)."""
        return self._list(rel, recursive=True)[1]

    def _list(self, rel: str, *, recursive: bool) -> tuple[list[str], list[Entry]]:
        selector = pafs.FileSelector(self.path(rel), allow_not_found=True, recursive=recursive)
        strip = len(self.base) + 1
        dirs: list[str] = []
        files: list[Entry] = []
        for info in self.fs.get_file_info(selector):
            if info.type == pafs.FileType.Directory:
                dirs.append(info.base_name)
            elif info.type == pafs.FileType.File and info.base_name:
                mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
                files.append(Entry(info.path[strip:], int(info.size or 0), mtime))
                remember(info.path, int(info.size or 0), mtime)
        return sorted(dirs), sorted(files, key=lambda e: e.rel)

    # --- control plane (s3fs: conditional requests and ETags) ----------------------------

    @property
    def s3fs(self) -> Any:
        return fsspec_fs(self.config)

    def _bucket_key(self, rel: str) -> tuple[str, str]:
        bucket, _, key = self.path(rel).partition("/")
        return bucket, key

    def create(self, rel: str, data: bytes) -> str:
        """PUT only if absent (`If-None-Match: *`); returns the ETag, raises PreconditionFailed."""
        bucket, key = self._bucket_key(rel)
        return self._conditional("put_object", Bucket=bucket, Key=key, Body=data,
                                 IfNoneMatch="*")

    def replace(self, rel: str, data: bytes, etag: str) -> str:
        """PUT only if the object still has `etag` (`If-Match`); returns the new ETag."""
        bucket, key = self._bucket_key(rel)
        return self._conditional("put_object", Bucket=bucket, Key=key, Body=data, IfMatch=etag)

    def _conditional(self, op: str, **kwargs: Any) -> str:
        from botocore.exceptions import ClientError

        try:
            out = self.s3fs.call_s3(op, **kwargs)
        except ClientError as exc:  # raised as-is by some s3fs versions
            if _precondition(exc):
                raise PreconditionFailed(kwargs["Key"]) from None
            raise
        except OSError as exc:  # s3fs translates most errors
            if _precondition(exc.__cause__) or _precondition(exc.__context__) or \
                    "pre-condition" in str(exc) or "PreconditionFailed" in str(exc):
                raise PreconditionFailed(kwargs["Key"]) from None
            raise
        return str(out.get("ETag", ""))

    def read_tagged(self, rel: str) -> tuple[bytes, str] | None:
        """(bytes, ETag) of one GET, or None when the object does not exist."""
        from fsspec.asyn import sync

        bucket, key = self._bucket_key(rel)
        fs = self.s3fs

        async def get() -> tuple[bytes, str]:
            out = await fs._call_s3("get_object", Bucket=bucket, Key=key)
            body = out["Body"]
            try:
                data = await body.read()
            finally:
                body.close()
            return bytes(data), str(out.get("ETag", ""))

        try:
            result: tuple[bytes, str] = sync(fs.loop, get)
        except FileNotFoundError:
            return None
        return result


def _precondition(exc: BaseException | None) -> bool:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("PreconditionFailed", "ConditionalRequestConflict") or status == 412


def open_store(root: str) -> Store:
    """The store of an `s3://` root, with the settings' storage options and the AWS env vars."""
    if not is_remote(root):
        raise ValueError(f"{root!r} is a local folder, not an object-storage root")
    return Store(root, S3Config.resolve(get_settings().storage_options))


def digest(text: str) -> str:
    """A short stable id of a text (for lock names)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()
