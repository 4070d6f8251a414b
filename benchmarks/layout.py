"""File-layout choices, measured: sort order, row-group size, dictionary encoding, zstd level.

Run: python benchmarks/layout.py --source LAKE [--work DIR] [--rounds 7] [--json PATH]

Takes a lake built by `benchmarks/queries.py` (e.g. /tmp/xray-bench-100000x50) and rewrites one
table at a time into variants, one file per partition (as after compaction), the other tables
linked unchanged. Each variant answers the questions its table serves; rounds interleave the
variants so that load on a shared machine hits them alike. Reports medians (ms) and bytes.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

import xray_lake as xr
from xray_lake.records.schema import DICTIONARY_COLUMNS
from xray_lake.storage.layout import TABLES


@dataclass(frozen=True)
class Variant:
    name: str
    table: str
    sort: tuple[str, ...] = ()
    row_group: int = 1 << 20
    dictionary: bool = True
    level: int = 3


@dataclass
class Result:
    variant: Variant
    bytes: int
    times: dict[str, list[float]] = field(default_factory=dict)

    def medians(self) -> dict[str, float]:
        return {q: round(statistics.median(ts) * 1000, 1) for q, ts in self.times.items()}


HEADLINE = {"stage": {"type": "filtering", "$failRatio": {"$gt": 0.9}}}


def stage_questions(journey: tuple[str, str]) -> dict[str, Callable[[xr.Lake], object]]:
    narrow = ("select run_id, label, name, fail_ratio from stages "
              "where type = 'filtering' and fail_ratio > 0.9")
    return {
        "headline, 4 columns": lambda lake: lake.sql(narrow),
        "headline, find": lambda lake: lake.find(HEADLINE),
        "funnel of a run": lambda lake: lake.funnel(journey[0]),
        "slowest stage p90": lambda lake: lake.sql(
            "select label, name, quantile_cont(duration_ms, 0.9) from stages group by all"),
    }


def candidate_questions(journey: tuple[str, str]) -> dict[str, Callable[[xr.Lake], object]]:
    return {
        "journey": lambda lake: lake.journey(*journey),
        "reasons of filtering": lambda lake: lake.sql(
            "select reason_label, count(*) from candidates where stage_type = 'filtering' "
            "group by 1"),
        "count": lambda lake: lake.sql("select count(*) from candidates"),
    }


def variants() -> list[Variant]:
    s, c = "stages", "candidates"
    by_run = ("run_id", "stage_id")
    by_type = ("type", "fail_ratio", "name", "run_id", "seq")
    return [
        Variant("stages: by run_id, 1 row group", s, by_run),
        Variant("stages: by type+fail_ratio, 1 row group", s, by_type),
        Variant("stages: by type+fail_ratio, 16k rows", s, by_type, 16_384),
        Variant("stages: by type+fail_ratio, 4k rows", s, by_type, 4_096),
        Variant("stages: by type+fail_ratio, 1k rows", s, by_type, 1_024),
        Variant("candidates: by run_id, 1M rows", c, by_run, 1 << 20),
        Variant("candidates: by run_id, 128k rows", c, by_run, 131_072),
        Variant("candidates: by run_id, 32k rows", c, by_run, 32_768),
        Variant("candidates: 128k, no dictionary", c, by_run, 131_072, dictionary=False),
        Variant("candidates: 128k, zstd 1", c, by_run, 131_072, level=1),
        Variant("candidates: 128k, zstd 9", c, by_run, 131_072, level=9),
    ]


def build(source: str, work: str, v: Variant) -> tuple[str, int, float]:
    """The variant's lake (reused when present), its table's bytes and write seconds."""
    root = os.path.join(work, "".join(ch if ch.isalnum() else "-" for ch in v.name))
    marker = os.path.join(root, "_layout.json")
    if os.path.exists(marker):
        with open(marker) as fh:
            done = json.load(fh)
        return root, int(done["bytes"]), float(done["write_s"])
    os.makedirs(root, exist_ok=True)
    for table in TABLES:
        if table != v.table and not os.path.exists(os.path.join(root, table)):
            os.symlink(os.path.join(source, table), os.path.join(root, table))
    size, write_s = 0, 0.0
    for part in sorted(glob.glob(os.path.join(source, v.table, "label=*", "date=*"))):
        files = sorted(glob.glob(os.path.join(part, "*.parquet")))
        table = pa.concat_tables([pq.ParquetFile(f).read() for f in files])
        if v.sort:
            table = table.sort_by([(k, "ascending") for k in v.sort])
        out = os.path.join(root, os.path.relpath(part, source))
        os.makedirs(out, exist_ok=True)
        path = os.path.join(out, "part-v1-layout-00000001.parquet")
        dictionary: bool | list[str] = (
            [c for c in DICTIONARY_COLUMNS[v.table] if c in table.column_names]
            if v.dictionary else False)
        started = time.perf_counter()
        pq.write_table(table, path, compression="zstd", compression_level=v.level,
                       row_group_size=v.row_group, use_dictionary=dictionary,
                       write_statistics=True)
        write_s += time.perf_counter() - started
        size += os.path.getsize(path)
    with open(marker, "w") as fh:
        json.dump({"bytes": size, "write_s": write_s}, fh)
    return root, size, write_s


def journey_of(source: str) -> tuple[str, str]:
    meta = os.path.join(source, "_benchmark.json")
    if os.path.exists(meta):
        with open(meta) as fh:
            run_id, candidate_id = json.load(fh)["build"]["journey"]
            return str(run_id), str(candidate_id)
    with xr.Lake(source) as lake:
        row = lake.sql("select run_id, candidate_id from candidates limit 1").row(0)
    return str(row[0]), str(row[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="a lake built by benchmarks/queries.py")
    parser.add_argument("--work", default=None, help="where variants go (default: SOURCE-layout)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", default="", help="run variants whose name contains this")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if not os.path.isdir(os.path.join(args.source, "stages")):
        parser.error(f"--source {args.source!r} is not a lake (no stages/ folder in it)")
    work = args.work or args.source.rstrip("/") + "-layout"
    journey = journey_of(args.source)
    chosen = [v for v in variants() if args.only in v.name]
    results: list[tuple[Result, str, float]] = []
    for v in chosen:
        root, size, write_s = build(args.source, work, v)
        results.append((Result(v, size), root, write_s))
        print(f"built {v.name}: {size / 2**20:.1f} MiB, written in {write_s:.1f} s",
              file=sys.stderr)
    lakes = {id(r): xr.Lake(root) for r, root, _ in results}
    for round_no in range(args.rounds + 1):  # round 0 warms caches and is not counted
        for r, _, _ in results:
            lake = lakes[id(r)]
            asks = (stage_questions if r.variant.table == "stages" else candidate_questions)
            for q, ask in asks(journey).items():
                started = time.perf_counter()
                ask(lake)
                if round_no:
                    r.times.setdefault(q, []).append(time.perf_counter() - started)
        print(f"round {round_no} done", file=sys.stderr)
    report: list[dict[str, Any]] = []
    for r, _, write_s in results:
        row = {"variant": r.variant.name, "MiB": round(r.bytes / 2**20, 1),
               "write_s": round(write_s, 2), **r.medians()}
        report.append(row)
        print(json.dumps(row))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"source": args.source, "rounds": args.rounds, "results": report}, fh,
                      indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
