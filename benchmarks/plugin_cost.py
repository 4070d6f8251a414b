"""What a metric plugin costs the writer thread: building one 5,000-candidate filtering stage's
rows with and without plugins (the caller's thread never runs plugins: see hot_path.py).

Run: python benchmarks/plugin_cost.py [--candidates 5000] [--rounds 30] [--json PATH]

The stage is hot_path.py's (survivors only, the default snapshot mode). Each round captures
fresh stage events through the SDK and times `build_stage` on each (the writer's work for one
stage, Parquet writing excluded), interleaving the variants so load changes hit them alike:
  none     no plugin registered (the baseline: one dict lookup for plugins)
  cheap    one plugin over the standard columns: the share of failed candidates
  fields   one plugin reading a candidate field: p90 price of the failed (fields=["price"],
           so the payloads are decoded too)
Medians of the thread's CPU time in µs; the plugin cost is the difference with `none`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Mapping
from typing import Any

import polars as pl
from _common import report  # beside this script
from hot_path import instrumented_filter, make_products

import xray_lake as xr
from xray_lake.records import plugin_registry as registry
from xray_lake.records.build import build_stage
from xray_lake.records.events import StageEvent
from xray_lake.sdk import recording


def failed_share(candidates: pl.DataFrame, stage: Mapping[str, Any]) -> float:
    return float((~candidates["passed"]).mean() or 0.0)


def price_p90_of_failed(candidates: pl.DataFrame, stage: Mapping[str, Any]) -> float | None:
    return candidates.filter(~pl.col("passed"))["price"].quantile(0.9)


VARIANTS: dict[str, tuple[str, Any, list[str]] | None] = {
    "none": None,
    "cheap": ("failed_share", failed_share, []),
    "fields": ("price_p90_of_failed", price_p90_of_failed, ["price"]),
}


class _Capture:
    """Stands in for the writer: keeps the events the SDK submits."""

    def __init__(self) -> None:
        self.events: list[StageEvent] = []

    def submit(self, event: object) -> None:
        if isinstance(event, StageEvent):
            self.events.append(event)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    products = make_products(args.candidates)
    capture = _Capture()
    recording.get_writer = lambda: capture  # type: ignore[assignment,return-value]
    settings = xr.get_settings()
    registry.load_entry_points()
    state = registry.snapshot()
    samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    metrics: dict[str, Any] = {}
    for r in range(args.rounds + 1):  # round 0 warms up
        for name, plugin in VARIANTS.items():
            registry.restore(state)
            if plugin is not None:
                xr.register_metric("filtering", plugin[1], name=plugin[0], fields=plugin[2],
                                   budget_ms=None)
            instrumented_filter(products)
            event = capture.events.pop()
            t0 = time.thread_time()  # CPU time: what the writer thread spends
            built = build_stage(event, settings)
            elapsed = (time.thread_time() - t0) * 1e6
            if r:
                samples[name].append(elapsed)
            metrics[name] = built.row["metrics"]
    registry.restore(state)
    medians = {name: statistics.median(v) for name, v in samples.items()}
    result: dict[str, Any] = {
        "candidates": args.candidates,
        "rounds": args.rounds,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "build_stage_no_plugin_us": round(medians["none"], 1),
        "build_stage_cheap_plugin_us": round(medians["cheap"], 1),
        "cheap_plugin_cost_us": round(medians["cheap"] - medians["none"], 1),
        "build_stage_field_plugin_us": round(medians["fields"], 1),
        "field_plugin_cost_us": round(medians["fields"] - medians["none"], 1),
        "metrics_cheap": metrics["cheap"],
        "metrics_fields": metrics["fields"],
        "python": sys.version.split()[0],
        "xray_lake": xr.__version__,
    }
    report(result, args.json_path, width=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
