"""Process-wide settings: read from the environment once, validated once at configure()."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from xray_lake.errors import ConfigError

DEFAULT_ROOT = "data/lake"
KIB = 1024
MIB = 1024 * KIB


def _default_spool_dir() -> str:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(state) / "xray-lake" / "spool")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


class Settings(BaseModel):
    """Everything the SDK and writer need; frozen so a running writer never sees it change."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    root: str = Field(default=DEFAULT_ROOT, min_length=1)
    spool_dir: str = Field(default_factory=_default_spool_dir, min_length=1)
    strict: bool = False
    enabled: bool = True
    # Writer cadence: buffered records are encoded every `drain_interval_s` and written as one
    # file per table/label/date at least every `flush_interval_s`, or sooner when
    # `flush_rows` candidate rows or `flush_bytes` encoded bytes are buffered.
    drain_interval_s: float = Field(default=0.5, gt=0, le=60)
    flush_interval_s: float = Field(default=10.0, gt=0, le=3600)
    flush_rows: int = Field(default=500_000, ge=1)
    flush_bytes: int = Field(default=64 * MIB, ge=1)
    # Hard bound on memory held by records not yet written (estimated before encoding,
    # exact after); records past it are dropped and counted.
    max_buffer_bytes: int = Field(default=256 * MIB, ge=MIB // 4)
    exit_timeout_s: float = Field(default=5.0, ge=0, le=600)
    # Size caps: a longer value is cut, marked and counted in n_truncated.
    payload_cap_bytes: int = Field(default=16 * KIB, ge=64)
    raw_cap_bytes: int = Field(default=64 * KIB, ge=64)
    reason_cap_chars: int = Field(default=2000, ge=16)
    # "freeze": candidates are encoded on the caller's thread when the stage returns, so later
    # mutations never reach the record (~1x one orjson.dumps of the list). "reference": the
    # writer reads them within drain_interval_s (~0.1x); only for pipelines that never
    # mutate candidates after a stage returned.
    snapshot: Literal["freeze", "reference"] = "freeze"
    compression_level: int = Field(default=3, ge=1, le=22)
    fsync: bool = True
    topk: int = Field(default=10, ge=1)


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
    return env


def _validate(values: dict[str, Any]) -> Settings:
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid xray-lake settings: {problems}") from None


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

    Raises ConfigError naming each bad setting. Records buffered under the old settings are
    flushed to the old root first.
    """
    global _settings
    with _lock:
        base = _from_env() if _settings is None else _settings.model_dump()
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
