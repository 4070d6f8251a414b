"""Process-wide settings: read from the environment once, validated once at configure().

A frozen dataclass checked by hand rather than a pydantic model: `import xray_lake` stays
light (pydantic's import and model build cost more than the rest of the SDK's import).
"""

from __future__ import annotations

import difflib
import os
import threading
from dataclasses import asdict, dataclass, fields
from dataclasses import field as _field
from typing import Any, Literal

from xray_lake.errors import ConfigError

DEFAULT_ROOT = "data/lake"
KIB = 1024
MIB = 1024 * KIB


def _default_spool_dir() -> str:
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                                 "state")
    return os.path.join(state, "xray-lake", "spool")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


STORAGE_OPTIONS: dict[str, str] = {
    "endpoint_url": "S3 endpoint URL, e.g. http://127.0.0.1:8333 (env AWS_ENDPOINT_URL_S3, "
                    "AWS_ENDPOINT_URL; default: AWS)",
    "region": "bucket region (env AWS_REGION, AWS_DEFAULT_REGION)",
    "access_key_id": "access key (env AWS_ACCESS_KEY_ID; default: the AWS credential chain)",
    "secret_access_key": "secret key (env AWS_SECRET_ACCESS_KEY)",
    "session_token": "session token of temporary credentials (env AWS_SESSION_TOKEN)",
    "anonymous": "true: unsigned requests, for public buckets (reads only)",
    "connect_timeout": "seconds to wait for a connection",
    "request_timeout": "seconds to wait for a response (reads through fsspec)",
    "duckdb_access": "auto (httpfs if it loads, else fsspec), httpfs or fsspec",
}
"""`storage_options` keys for `s3://` roots; each overrides its environment variable."""

_TRUE_FALSE = {"1": "true", "true": "true", "yes": "true", "on": "true",
               "0": "false", "false": "false", "no": "false", "off": "false"}


def check_storage_options(options: dict[str, Any]) -> dict[str, str]:
    """Validate keys and values of `storage_options`; values come back as strings.

    Raises ValueError naming the bad key or value, the valid keys and the nearest one.
    """
    checked: dict[str, str] = {}
    for key, raw in options.items():
        if key not in STORAGE_OPTIONS:
            near = difflib.get_close_matches(str(key), STORAGE_OPTIONS, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ValueError(f"unknown storage option {key!r}{hint}; valid keys: "
                             f"{', '.join(STORAGE_OPTIONS)}")
        if not isinstance(raw, str | int | float | bool):
            raise ValueError(f"storage option {key!r} must be a string, got {type(raw).__name__}")
        value = str(raw).lower() if isinstance(raw, bool) else str(raw).strip()
        if key == "endpoint_url" and not value.startswith(("http://", "https://")):
            raise ValueError(f"storage option 'endpoint_url' must start with http:// or "
                             f"https://, got {value!r}")
        if key == "anonymous":
            if value.lower() not in _TRUE_FALSE:
                raise ValueError(f"storage option 'anonymous' must be true or false, got {value!r}")
            value = _TRUE_FALSE[value.lower()]
        if key in ("connect_timeout", "request_timeout"):
            try:
                ok = float(value) > 0
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(f"storage option {key!r} must be a positive number of "
                                 f"seconds, got {value!r}")
        if key == "duckdb_access" and value not in ("auto", "httpfs", "fsspec"):
            raise ValueError(f"storage option 'duckdb_access' must be auto, httpfs or fsspec, "
                             f"got {value!r}")
        checked[key] = value
    if ("access_key_id" in checked) != ("secret_access_key" in checked):
        raise ValueError("storage options 'access_key_id' and 'secret_access_key' go together: "
                         "set both, or neither (then the AWS environment variables are used)")
    return checked


@dataclass(frozen=True)
class Settings:
    """Everything the SDK and writer need; frozen so a running writer never sees it change.

    Raises ValueError naming every bad setting (configure() turns it into ConfigError).
    """

    root: str = DEFAULT_ROOT
    spool_dir: str = _field(default_factory=_default_spool_dir)
    strict: bool = False
    enabled: bool = True
    # Writer cadence: buffered records are encoded every `drain_interval_s` and written as one
    # file per table/label/date at least every `flush_interval_s`, or sooner when
    # `flush_rows` candidate rows or `flush_bytes` encoded bytes are buffered (at most
    # max_buffer_bytes / 8: a write's working set grows with the table, see max_buffer_bytes).
    drain_interval_s: float = _field(default=0.5, metadata={"gt": 0, "le": 60})
    flush_interval_s: float = _field(default=10.0, metadata={"gt": 0, "le": 3600})
    flush_rows: int = _field(default=500_000, metadata={"ge": 1})
    flush_bytes: int = _field(default=64 * MIB, metadata={"ge": 1})
    max_buffer_bytes: int = _field(default=256 * MIB, metadata={"ge": MIB // 4})
    """Bound on the SDK's memory: what its records and its writer add to the process's RSS.

    Half of it is for records not yet written: queued (estimated: the caller's frozen blobs
    and copies, x2 for decoding them) and buffered (their exact Arrow bytes). A record that
    would take those past half the bound waits for room (`on_full`, `max_block_s`). The
    other half is reserved for what no record owns: the working set of encoding a record and
    of writing a table (Parquet pages, compression, a whole file for `s3://`), and memory the
    allocators keep (freed Arrow memory is returned to the OS after each write). Not covered:
    the caller's own candidate objects, which a queued record references until the writer
    encodes it, and the fixed cost of the loaded libraries and the writer thread. A Parquet
    write has a working set of its own whatever the table's size, so bounds under ~64 MiB
    are exceeded by a roughly fixed amount; see docs/reliability.md.
    """
    on_full: Literal["block", "drop"] = "block"
    """What a recording call does when the records held reach their share of max_buffer_bytes:
    "block" (default) waits for the writer to make room, up to `max_block_s`, so a writer that
    is merely behind never loses a record; "drop" sheds at once (latency-critical services).
    Shed records are counted (`xr.stats()["dropped"]`) and their run is written with
    status 'incomplete'."""
    max_block_s: float = _field(default=60.0, metadata={"ge": 0, "le": 3600})
    """The longest one recording call waits for room under on_full="block" (like Kafka's
    producer `max.block.ms`); past it the record is shed and counted."""
    exit_timeout_s: float = _field(default=5.0, metadata={"ge": 0, "le": 600})
    writer: Literal["process", "thread"] = "process"
    """Where records are turned into Parquet. "process" (default): a writer process of this
    process's own, started with the first record, so the pipeline's interpreter never runs
    the writer's work and never loads pyarrow; records it has received are written even if
    this process is killed. "thread": a background thread of this process (also used for
    `capture_records` and in-process metric plugins, and when no writer process can start)."""
    # Size caps: a longer value is cut, marked and counted in n_truncated.
    payload_cap_bytes: int = _field(default=16 * KIB, metadata={"ge": 64})
    raw_cap_bytes: int = _field(default=64 * KIB, metadata={"ge": 64})
    reason_cap_chars: int = _field(default=2000, metadata={"ge": 16})
    # "freeze": candidates are encoded on the caller's thread when the stage returns, so later
    # mutations never reach the record (the caller pays about one orjson.dumps of the list).
    # "reference": the writer reads them within drain_interval_s (the caller pays a small
    # fraction of that); only for pipelines that never mutate candidates after a stage
    # returned. Figures: benchmarks/RESULTS.md (hot path).
    snapshot: Literal["freeze", "reference"] = "freeze"
    compression_level: int = _field(default=3, metadata={"ge": 1, "le": 22})
    fsync: bool = True
    background_compaction: bool = True
    """The writer merges sealed partitions (and today's runs/stages files) on a low-priority
    thread, with the same protocol as `xray-lake compact` (docs/compaction.md)."""
    compaction_interval_s: float = _field(default=60.0, metadata={"gt": 0, "le": 86400})
    """Seconds between two background compaction ticks (the first comes one interval in)."""
    topk: int = _field(default=10, metadata={"ge": 1})
    # For `s3://` roots: endpoint, region, credentials (see STORAGE_OPTIONS); unset keys come
    # from the standard AWS environment variables.
    storage_options: dict[str, str] = _field(default_factory=dict)

    def __post_init__(self) -> None:
        problems: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            try:
                checked = _check(f.name, f.type, value, f.metadata)
            except ValueError as exc:
                problems.append(f"{f.name}: {exc}")
                continue
            if checked is not value:
                object.__setattr__(self, f.name, checked)
        if problems:
            raise ValueError("; ".join(problems))

    def as_dict(self) -> dict[str, Any]:
        """The settings as a dict (what configure() starts from)."""
        return asdict(self)


_LITERALS = {"on_full": ("block", "drop"), "snapshot": ("freeze", "reference"),
             "writer": ("process", "thread")}


def _check(name: str, kind: object, value: Any, rules: Any) -> Any:
    """One setting checked against its declared type and bounds; returns it (coerced)."""
    kind = str(kind)
    if name in _LITERALS:
        if value not in _LITERALS[name]:
            raise ValueError(f"must be one of {', '.join(map(repr, _LITERALS[name]))}, "
                             f"got {value!r}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, got {value!r}")
        return value
    if kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be a number, got {value!r}")
        if kind == "int":
            if value != int(value):
                raise ValueError(f"must be a whole number, got {value!r}")
            value = int(value)
        else:
            value = float(value)
        for rule, ok in (("gt", value.__gt__), ("ge", value.__ge__), ("le", value.__le__)):
            if rule in rules and not ok(rules[rule]):
                word = {"gt": "greater than", "ge": "at least", "le": "at most"}[rule]
                raise ValueError(f"must be {word} {rules[rule]}, got {value!r}")
        return value
    if name == "storage_options":
        if not isinstance(value, dict):
            raise ValueError(f"must be a dict of KEY: value, got {type(value).__name__}")
        return check_storage_options(value)
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty string, got {value!r}")
    if name == "root":
        if "://" in value and not value.startswith("s3://"):
            raise ValueError(f"{value!r}: unsupported scheme {value.split('://')[0]}://; a lake "
                             "root is a local folder or s3://bucket/prefix")
        if value.startswith("s3://") and not value[5:].strip("/"):
            raise ValueError(f"{value!r} names no bucket: use s3://bucket/prefix")
    return value


_lock = threading.Lock()
_settings: Settings | None = None
_listeners: list[Any] = []


def _from_env() -> dict[str, Any]:
    env: dict[str, Any] = {}
    if root := os.environ.get("XRAY_LAKE_ROOT"):
        env["root"] = root
    if spool := os.environ.get("XRAY_LAKE_SPOOL"):
        env["spool_dir"] = spool
    if "XRAY_LAKE_STRICT" in os.environ:
        env["strict"] = _env_flag("XRAY_LAKE_STRICT")
    if "XRAY_LAKE_DISABLED" in os.environ:
        env["enabled"] = not _env_flag("XRAY_LAKE_DISABLED")
    if writer := os.environ.get("XRAY_LAKE_WRITER"):
        env["writer"] = writer
    if "XRAY_LAKE_BACKGROUND_COMPACTION" in os.environ:
        env["background_compaction"] = _env_flag("XRAY_LAKE_BACKGROUND_COMPACTION")
    return env


def _validate(values: dict[str, Any]) -> Settings:
    unknown = sorted(set(values) - {f.name for f in fields(Settings)})
    if unknown:
        near = {u: difflib.get_close_matches(u, [f.name for f in fields(Settings)], n=1)
                for u in unknown}
        hints = [f"{u}: unknown setting" + (f" (did you mean {near[u][0]!r}?)" if near[u] else "")
                 for u in unknown]
        raise ConfigError(f"invalid xray-lake settings: {'; '.join(hints)}")
    try:
        return Settings(**values)
    except ValueError as exc:
        raise ConfigError(f"invalid xray-lake settings: {exc}") from None


def get_settings() -> Settings:
    """The settings in force; the first call reads the environment."""
    global _settings
    current = _settings
    if current is None:
        with _lock:
            if _settings is None:
                _settings = _validate(_from_env())
            current = _settings
    return current


def configure(**changes: Any) -> Settings:
    """Change settings for this process (env vars give the defaults); validates everything now.

    It does not wait for the writer: records recorded under the old settings are still
    written under them (old root included), in the background; `xr.flush()` waits for those
    too, and `xr.stats()` keeps counting them.

    Parameters
    ----------
    **changes
        Any field of `Settings`, by name; the others keep their current values. The ones
        most often set: `root` (a folder or `s3://bucket/prefix`), `enabled`, `strict`
        (instrumentation errors raise instead of being logged and counted), `on_full`
        ("block" or "drop") and `max_block_s`, `max_buffer_bytes`, `snapshot`, `fsync`,
        `storage_options` (endpoint, region, credentials for `s3://` roots).

    Returns
    -------
    Settings
        The settings now in force (frozen).

    Raises
    ------
    ConfigError
        Naming every bad setting and what it must be; nothing is changed.

    Examples
    --------
    >>> settings = xr.configure(flush_interval_s=2, on_full="drop")
    >>> settings.flush_interval_s, settings.on_full
    (2.0, 'drop')
    >>> xr.configure(on_full="wait", max_block_s=-1)
    Traceback (most recent call last):
    ...
    xray_lake.errors.ConfigError: invalid xray-lake settings: on_full: must be one of
    'block', 'drop', got 'wait'; max_block_s: must be at least 0, got -1.0
    """
    global _settings
    with _lock:
        base = _from_env() if _settings is None else _settings.as_dict()
        new = _validate({**base, **changes})
        old, _settings = _settings, new
    for listener in list(_listeners):
        listener(old, new)
    return new


def reset() -> Settings:
    """Forget configure() calls and re-read the environment (for tests)."""
    global _settings
    with _lock:
        old, _settings = _settings, _validate(_from_env())
        new = _settings
    for listener in list(_listeners):
        listener(old, new)
    return new


def on_change(listener: Any) -> None:
    """Register `listener(old, new)`; the writer uses it to flush under the old settings."""
    _listeners.append(listener)
