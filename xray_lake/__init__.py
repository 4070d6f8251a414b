"""xray-lake: an X-ray for multi-stage decision pipelines, recorded into a Parquet lake."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from xray_lake._version import __version__
from xray_lake.errors import (
    ConfigError,
    DecorationError,
    LakeReadError,
    QueryError,
    XrayLakeError,
)

if TYPE_CHECKING:  # everything else loads on first use: `xray-lake --version` needs none of it
    from xray_lake.config import Settings, configure, get_settings
    from xray_lake.query.lake import Lake
    from xray_lake.records.options import Caps, Sample
    from xray_lake.records.promoted import Field
    from xray_lake.records.results import Filtered, Generated, Scored
    from xray_lake.sdk.context import Run, Stage, run, stage
    from xray_lake.sdk.decorators import (
        filtering_stage,
        generation_stage,
        ranking_stage,
        raw_stage,
        retrieval_stage,
        scoring_stage,
    )
    from xray_lake.sdk.markers import Candidates, RawInput
    from xray_lake.sdk.pipelines import entrypoint, pipeline
    from xray_lake.sdk.plugins import metric, register_metric, register_stage_type
    from xray_lake.storage.compaction.api import compact

_LAZY = {
    **dict.fromkeys(("Settings", "configure", "get_settings"), "xray_lake.config"),
    "Lake": "xray_lake.query.lake",  # the query engines (duckdb, polars)
    **dict.fromkeys(("Caps", "Sample"), "xray_lake.records.options"),
    "Field": "xray_lake.records.promoted",
    **dict.fromkeys(("Filtered", "Generated", "Scored"), "xray_lake.records.results"),
    **dict.fromkeys(("Run", "Stage", "run", "stage"), "xray_lake.sdk.context"),
    **dict.fromkeys(("filtering_stage", "generation_stage", "ranking_stage", "raw_stage",
                     "retrieval_stage", "scoring_stage"), "xray_lake.sdk.decorators"),
    **dict.fromkeys(("Candidates", "RawInput"), "xray_lake.sdk.markers"),
    **dict.fromkeys(("entrypoint", "pipeline"), "xray_lake.sdk.pipelines"),
    **dict.fromkeys(("metric", "register_metric", "register_stage_type"),
                    "xray_lake.sdk.plugins"),
    "compact": "xray_lake.storage.compaction.api",
}


def __getattr__(name: str) -> Any:
    """Public names import their module on first use (`xr.Lake` the query engines, `xr.run`
    the SDK), so that importing the package costs almost nothing."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'xray_lake' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def flush(timeout: float | None = None) -> bool:
    """Write everything recorded so far; True only when all of it is durable in the lake.

    Returns False on timeout or when any record failed or was dropped since the last flush.
    """
    from xray_lake.writer import process as _process

    deadline = None if timeout is None else time.monotonic() + timeout
    writer = _process.current_writer()
    ok = True if writer is None else writer.flush(timeout)
    left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
    return _process.flush_replaced(left) and ok


def stats() -> dict[str, Any]:
    """Counters of this process: records buffered, written, dropped (by reason), bytes, and
    metric plugin calls that failed or overran their budget (`metric_plugins`)."""
    from xray_lake._internal_errors import internal_errors
    from xray_lake.records import plugin_registry
    from xray_lake.writer import process as _process

    result = _process.stats()
    result["internal_errors"] = dict(internal_errors)
    result["metric_plugins"] = plugin_registry.stats()
    return result


__all__ = [
    "Candidates",
    "Caps",
    "ConfigError",
    "DecorationError",
    "Field",
    "Filtered",
    "Generated",
    "Lake",
    "LakeReadError",
    "QueryError",
    "RawInput",
    "Run",
    "Sample",
    "Scored",
    "Settings",
    "Stage",
    "XrayLakeError",
    "__version__",
    "compact",
    "configure",
    "entrypoint",
    "filtering_stage",
    "flush",
    "generation_stage",
    "get_settings",
    "metric",
    "pipeline",
    "ranking_stage",
    "raw_stage",
    "register_metric",
    "register_stage_type",
    "retrieval_stage",
    "run",
    "scoring_stage",
    "stage",
    "stats",
]
