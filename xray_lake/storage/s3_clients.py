"""S3 connection settings for `s3://` roots: storage options over AWS env vars, and the clients.

Two well-kept clients share one `S3Config`. `pyarrow.fs.S3FileSystem` (in the pyarrow wheel,
so a pipeline writing to S3 needs nothing more) moves the data, and serves DuckDB through
fsspec's `ArrowFSWrapper` (the `s3` extra). `s3fs` (also the `s3` extra) sends the conditional
requests compaction locks need, which pyarrow cannot. Both are built per process (a forked
child builds its own) and cached.
"""

from __future__ import annotations

import datetime
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from xray_lake.errors import ConfigError

SCHEMES = ("s3://",)

# storage option -> environment variables read when the option is not set, first found wins
_ENV: dict[str, tuple[str, ...]] = {
    "endpoint_url": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    "region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "access_key_id": ("AWS_ACCESS_KEY_ID",),
    "secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
    "session_token": ("AWS_SESSION_TOKEN",),
}


def is_remote(root: str) -> bool:
    """Whether `root` names object storage rather than a local folder."""
    return "://" in root


def split_root(root: str) -> str:
    """`s3://bucket/prefix/` -> `bucket/prefix` (the path pyarrow and s3fs take)."""
    if not root.startswith(SCHEMES):
        scheme = root.split("://", 1)[0]
        raise ConfigError(f"root {root!r}: unsupported scheme {scheme}://; a lake root is a "
                          "local folder or s3://bucket/prefix")
    path = root[len("s3://"):].strip("/")
    if not path or path.startswith("/"):
        raise ConfigError(f"root {root!r} names no bucket: use s3://bucket/prefix")
    return path


@dataclass(frozen=True, slots=True)
class S3Config:
    """Resolved connection settings (hashable: clients are cached per config)."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    anonymous: bool = False
    connect_timeout: float | None = None
    request_timeout: float | None = None
    duckdb_access: str = "auto"

    @classmethod
    def resolve(cls, options: Mapping[str, str]) -> S3Config:
        """Storage options first, then the standard AWS environment variables."""
        values: dict[str, str | None] = {}
        for key, names in _ENV.items():
            values[key] = options.get(key) or next(
                (os.environ[n] for n in names if os.environ.get(n)), None)
        if bool(values["access_key_id"]) != bool(values["secret_access_key"]):
            raise ConfigError("S3 credentials are incomplete: set both AWS_ACCESS_KEY_ID and "
                              "AWS_SECRET_ACCESS_KEY (or both storage options access_key_id "
                              "and secret_access_key), or neither")
        return cls(
            endpoint_url=values["endpoint_url"], region=values["region"],
            access_key_id=values["access_key_id"],
            secret_access_key=values["secret_access_key"],
            session_token=values["session_token"],
            anonymous=options.get("anonymous") == "true",
            connect_timeout=_seconds(options.get("connect_timeout")),
            request_timeout=_seconds(options.get("request_timeout")),
            duckdb_access=options.get("duckdb_access", "auto"),
        )

    def endpoint(self) -> tuple[str, str] | None:
        """(scheme, host[:port]) of a custom endpoint, or None for AWS itself."""
        if not self.endpoint_url:
            return None
        parts = urlsplit(self.endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise ConfigError(f"S3 endpoint {self.endpoint_url!r} must be http(s)://host[:port] "
                              "with no path")
        return parts.scheme, parts.netloc


def _seconds(value: str | None) -> float | None:
    return None if value is None else float(value)


def arrow_fs(config: S3Config) -> pafs.S3FileSystem:
    """The pyarrow client of this process for `config` (built once per process)."""
    return _arrow_fs(config, os.getpid())


@functools.lru_cache(maxsize=16)
def _arrow_fs(config: S3Config, _pid: int) -> pafs.S3FileSystem:
    kwargs: dict[str, Any] = {
        # file opens return at once and small files go up as one PutObject at close
        "allow_delayed_open": True,
        "anonymous": config.anonymous,
    }
    endpoint = config.endpoint()
    if endpoint is not None:
        kwargs["scheme"], kwargs["endpoint_override"] = endpoint
    if config.region:
        kwargs["region"] = config.region
    elif endpoint is not None:
        kwargs["region"] = "us-east-1"  # S3-compatible servers ignore it; the SDK wants one
    if config.access_key_id and not config.anonymous:
        kwargs["access_key"] = config.access_key_id
        kwargs["secret_key"] = config.secret_access_key
        if config.session_token:
            kwargs["session_token"] = config.session_token
    if config.connect_timeout is not None:
        kwargs["connect_timeout"] = config.connect_timeout
    if config.request_timeout is not None:
        kwargs["request_timeout"] = config.request_timeout
    return pafs.S3FileSystem(**kwargs)


LISTED: dict[str, tuple[int, float]] = {}
"""`bucket/key` -> (size, mtime) of objects as the latest LIST of their folder saw them.

Lake files are immutable and uniquely named, and every query's file list comes from a fresh
LIST: DuckDB's size and mtime questions about them are answered from here, not by a HEAD each.
"""
_LISTED_MAX = 1_000_000


def remember(path: str, size: int, mtime: float) -> None:
    if len(LISTED) >= _LISTED_MAX:
        LISTED.clear()
    LISTED[path] = (size, mtime)


def duckdb_fs(config: S3Config) -> Any:
    """pyarrow's S3 client as an fsspec filesystem for `duckdb.register_filesystem`.

    DuckDB reads through it faster than through s3fs (benchmarks/RESULTS.md): pyarrow's
    reads are C++ and release the GIL, s3fs's go through an asyncio loop.
    """
    return _wrapper_class()(arrow_fs(config), skip_instance_cache=True)


@functools.cache
def _wrapper_class() -> Any:
    try:
        from fsspec.implementations.arrow import ArrowFSWrapper
    except ImportError:
        raise ConfigError(
            "querying an s3:// lake with DuckDB needs fsspec: "
            "pip install 'xray-lake[s3]' (or pip install fsspec)"
        ) from None

    class S3ArrowFS(ArrowFSWrapper):  # type: ignore[misc]
        """`s3://bucket/key` paths, taken verbatim: no URL parsing, so `%2F`, `#` stay."""

        @classmethod
        def _strip_protocol(cls, path: Any) -> Any:
            if isinstance(path, list):
                return [cls._strip_protocol(p) for p in path]
            return str(path).removeprefix("s3://").rstrip("/")

        def glob(self, path: str, **kwargs: Any) -> Any:
            # DuckDB globs every path of an explicit file list; fsspec would send one HEAD per
            # file. The lists come from a fresh LIST: a file gone since fails at open instead.
            if not any(c in path for c in "*?["):
                return [self._strip_protocol(path)]
            return super().glob(path, **kwargs)

        def info(self, path: str, **kwargs: Any) -> Any:
            key = self._strip_protocol(path)
            known = LISTED.get(key)
            if known is None:
                return super().info(path, **kwargs)
            return {"name": key, "size": known[0], "type": "file",
                    "mtime": datetime.datetime.fromtimestamp(known[1], datetime.UTC)}

        def modified(self, path: str) -> Any:
            known = LISTED.get(self._strip_protocol(path))
            if known is None:
                return super().modified(path)
            return datetime.datetime.fromtimestamp(known[1], datetime.UTC)

        def _open(self, path: str, mode: str = "rb", *args: Any, **kwargs: Any) -> Any:
            try:
                return super()._open(path, mode, *args, **kwargs)
            except FileNotFoundError:  # the words DuckDB uses, which `Lake` retries on
                raise FileNotFoundError(f"No such file or directory: s3://{path}") from None

    return S3ArrowFS


def fsspec_fs(config: S3Config) -> Any:
    """The s3fs client of this process for `config`; a clear error when s3fs is missing."""
    return _fsspec_fs(config, os.getpid())


@functools.lru_cache(maxsize=16)
def _fsspec_fs(config: S3Config, _pid: int) -> Any:
    try:
        import s3fs
    except ImportError:
        raise ConfigError(
            "compacting an s3:// lake needs s3fs (for conditional PUTs): "
            "pip install 'xray-lake[s3]' (or pip install s3fs)"
        ) from None
    client: dict[str, Any] = {}
    if config.region:
        client["region_name"] = config.region
    elif config.endpoint_url:
        client["region_name"] = "us-east-1"
    timeouts: dict[str, Any] = {}
    if config.connect_timeout is not None:
        timeouts["connect_timeout"] = config.connect_timeout
    if config.request_timeout is not None:
        timeouts["read_timeout"] = config.request_timeout
    kwargs: dict[str, Any] = {
        "anon": config.anonymous,
        "endpoint_url": config.endpoint_url,
        "client_kwargs": client,
        "config_kwargs": timeouts,
        # Listings must be fresh: writers publish new files while a Lake is open.
        "use_listings_cache": False,
        "skip_instance_cache": True,
    }
    if config.access_key_id and not config.anonymous:
        kwargs.update(key=config.access_key_id, secret=config.secret_access_key,
                      token=config.session_token)
    return s3fs.S3FileSystem(**kwargs)
