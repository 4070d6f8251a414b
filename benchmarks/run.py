"""The benchmark suite (issue 4): hot path, ingest, queries, what users would pick instead, memory.

Run:
    python benchmarks/run.py --scale smoke|small|medium|large --json PATH [--root DIR] [--keep]
                             [--workloads hot_path,ingest,queries,alternatives,memory]
                             [--no-results-md]

Workloads (each reported in the JSON file and in a dated file under benchmarks/results/):
  hot_path      what one filtering stage costs the caller: benchmarks/hot_path.py in a
                subprocess (fewer rounds at `small`);
  ingest        N runs x 5 stages x ~K candidates through the SDK into a lake of its own
                (large files, flush included): candidate rows/s and bytes per row, beside
                pyarrow writing the same rows directly (ingest_vs_pyarrow.py);
  queries       the canonical questions (queries.py) on a lake built through the SDK with ~20
                files per partition and table (as a service flushing often leaves it), before
                and after `xr.compact`, medians;
  alternatives  the same data exported as JSON documents and asked questions 1, 3, 4, 7 in
                (a) JSON-lines + DuckDB read_json, (b) PostgreSQL JSONB, (c) SQLite JSON,
                beside xray-lake, with bytes on disk (alternatives*.py);
  memory        writer RSS under a burst of 10x max_buffer_bytes (memory_burst.py, a
                subprocess).
Everything lives under `--root` (default: a new temp folder), deleted at the end unless
`--keep`. `smoke` (what the tests run: every workload, figures too small to mean anything)
finishes in under a minute and `small` in about 2 minutes on 2 cores; `large` (100k runs,
>= 50M candidate rows) takes hours, mostly the alternatives loading and scanning tens of GB
of JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import queries
import run_report
from alternatives import Alternatives
from alternatives_common import Params
from ingest_vs_pyarrow import direct_write
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import xray_lake as xr

HERE = Path(__file__).resolve().parent
WORKLOADS = ("hot_path", "ingest", "queries", "alternatives", "memory")
INGEST_TARGET_PCT = 50.0


@dataclass(frozen=True)
class Scale:
    runs: int  # of the lake the queries and alternatives read
    candidates: int  # per stage, about (filters drop some: ~4.3 K candidate rows per run)
    hot_path_candidates: int
    hot_path_calls: int
    hot_path_rounds: int
    ingest_runs: int  # ingest builds its own lake (large files: the writer at full speed)
    ingest_rows: int  # candidate rows the direct-write baselines rewrite (whole partitions)
    cold_repeat: int
    warm_repeat: int
    cli_repeat: int  # 0: queries does not time the CLI (process start alone is ~1 s here)
    alternatives_repeat: int  # repeats after the first call, within alternatives_budget_s per question and engine
    alternatives_budget_s: float
    files_per_partition: int = 20  # the shared lake as a service flushing often leaves it
    memory_bound_mib: int = 64
    memory_factor: float = 10.0


SCALES: dict[str, Scale] = {
    # every workload once, its figures too small to mean anything: tests/test_benchmarks.py
    "smoke": Scale(300, 20, hot_path_candidates=1000, hot_path_calls=20, hot_path_rounds=1,
                   ingest_runs=150, ingest_rows=10**9, cold_repeat=1, warm_repeat=2, cli_repeat=0,
                   alternatives_repeat=1, alternatives_budget_s=0.5, files_per_partition=3,
                   memory_bound_mib=16),
    "small": Scale(1_000, 30, hot_path_candidates=2000, hot_path_calls=40, hot_path_rounds=2, ingest_runs=500,
                   ingest_rows=10**9, cold_repeat=2, warm_repeat=3, cli_repeat=0, alternatives_repeat=1,
                   alternatives_budget_s=2.0, files_per_partition=5),
    "medium": Scale(20_000, 200, hot_path_candidates=5000, hot_path_calls=300, hot_path_rounds=6,
                    ingest_runs=5_000, ingest_rows=1_000_000, cold_repeat=3, warm_repeat=5,
                    cli_repeat=3, alternatives_repeat=4, alternatives_budget_s=60.0),
    "large": Scale(100_000, 125, hot_path_candidates=5000, hot_path_calls=300, hot_path_rounds=6,
                   ingest_runs=10_000, ingest_rows=1_000_000, cold_repeat=3, warm_repeat=5,
                   cli_repeat=5, alternatives_repeat=4, alternatives_budget_s=120.0),
}


class Suite:
    """One benchmark run: its folder, console and the report being filled in."""

    def __init__(self, args: argparse.Namespace, root: str, console: Console) -> None:
        self.args = args
        self.scale: Scale = SCALES[args.scale]
        self.root = root
        self.lake = os.path.join(root, "lake")
        self.console = console
        self.started = time.perf_counter()
        self.report: dict[str, Any] = {"workloads": {}}
        self.build: dict[str, Any] | None = None

    def say(self, text: str) -> None:
        elapsed = time.perf_counter() - self.started
        self.console.print(f"[dim]{elapsed:6.1f}s[/dim] {text}")

    def progress(self) -> Progress:
        return Progress(TextColumn("        {task.description}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), console=self.console,
                        transient=True)

    # --- hot path -------------------------------------------------------------------------

    def hot_path(self) -> dict[str, Any]:
        s = self.scale
        out = os.path.join(self.root, "hot_path.json")
        argv = [sys.executable, str(HERE / "hot_path.py"), "--candidates", str(s.hot_path_candidates),
                "--calls", str(s.hot_path_calls), "--rounds", str(s.hot_path_rounds), "--json", out]
        self.say(f"[bold]hot path[/bold] hot path: {shlex.join(argv[1:])}")
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=3600)
        if done.returncode != 0:
            raise RuntimeError(f"hot_path.py failed: {done.stderr.strip()[-800:]}")
        result: dict[str, Any] = json.loads(Path(out).read_text())
        result["command"] = shlex.join(["python", "benchmarks/hot_path.py", *argv[2:-2]])
        self.say(f"     caller overhead (freeze, writer running) "
                 f"{result['caller_overhead_freeze_worker_running_us']:,.0f} µs = "
                 f"{result['caller_overhead_freeze_worker_running_vs_orjson']}x one orjson.dumps;"
                 f" total CPU {result['total_overhead_vs_orjson']}x")
        return result

    # --- the lake the queries and alternatives read ---------------------------------------

    def build_lake(self) -> dict[str, Any]:
        """The lake of queries and alternatives, with the many files per partition a service
        flushing often leaves: `xr.flush()` every few runs, so each label/day gets about
        `files_per_partition` files per table, whatever the machine's speed. What compaction
        is for."""
        s = self.scale
        flush_every = max(1, s.runs // ((queries.DAYS + 1) * s.files_per_partition))
        self.say(f"[bold]build[/bold] {s.runs:,} runs x {s.candidates} candidates through the "
                 f"SDK into {self.lake} (xr.flush() every {flush_every} runs)")
        info = queries.build(self.lake, s.runs, s.candidates, self.console,
                             flush_every=flush_every)
        self.build = dataclasses.asdict(info)
        return self.build

    def ingest(self) -> dict[str, Any]:
        s = self.scale
        lake = os.path.join(self.root, "lake-ingest")
        self.say(f"[bold]ingest[/bold] {s.ingest_runs:,} runs x {s.candidates} candidates "
                 f"through the SDK into {lake} (large files)")
        try:
            b = dataclasses.asdict(queries.build(lake, s.ingest_runs, s.candidates, self.console))
            result = self._ingest(lake, b)
        finally:
            shutil.rmtree(lake, ignore_errors=True)
        self.say("[bold]ingest[/bold] the same runs with recording off (the pipeline's own code)")
        try:
            off = queries.build(lake, s.ingest_runs, s.candidates, self.console,
                                settings={**queries.writer_settings(), "enabled": False})
        finally:
            shutil.rmtree(lake, ignore_errors=True)
            xr.configure(enabled=True)
        rows = result["sdk"]["candidate_rows"]
        sdk_s = max(result["sdk"]["seconds"] - off.seconds, 1e-9)
        own = rows / sdk_s
        result["pipeline_alone_s"] = round(off.seconds, 2)
        result["sdk_only_rows_per_s"] = round(own)
        result["sdk_only_pct_of_dicts"] = round(
            100 * own / max(result["direct"]["dicts_rows_per_s"], 1), 1)
        result["sdk_only_pct_of_encoded"] = round(
            100 * own / max(result["direct"]["encoded_rows_per_s"], 1), 1)
        self.say(f"     pipeline alone {off.seconds:.1f} s; the SDK's own time "
                 f"{sdk_s:.1f} s = {own:,.0f} rows/s ({result['sdk_only_pct_of_dicts']}% of (ii))")
        return result

    def _ingest(self, lake: str, b: dict[str, Any]) -> dict[str, Any]:
        disk = queries.disk_usage(lake)
        rows = int(b["sdk_rows"])
        total = sum(u["bytes"] for u in disk.values())
        sdk = {
            "runs": b["runs"], "candidates_per_stage": b["candidates"],
            "candidate_rows": rows, "seconds": round(b["seconds"], 2),
            "rows_per_s": round(b["rows_per_s"]), "throttled_s": round(b["throttled_s"], 2),
            "records_dropped": b["dropped"], "settings": b["settings"],
            "bytes_candidates": disk["candidates"]["bytes"], "bytes_total": total,
            "bytes_per_candidate_row": round(disk["candidates"]["bytes"] / max(rows, 1), 2),
            "bytes_total_per_candidate_row": round(total / max(rows, 1), 2),
            "files": sum(u["files"] for u in disk.values()),
        }
        level = xr.get_settings().compression_level
        self.say(f"[bold]ingest[/bold] SDK: {rows:,} candidate rows in {b['seconds']:.1f} s = "
                 f"{b['rows_per_s']:,.0f} rows/s, {sdk['bytes_per_candidate_row']} B/row; "
                 "direct pyarrow writes of the same rows...")
        direct = direct_write(lake, os.path.join(self.root, "ingest"), self.scale.ingest_rows,
                              level).as_dict()
        vs_encoded = 100 * b["rows_per_s"] / max(direct["encoded_rows_per_s"], 1)
        vs_dicts = 100 * b["rows_per_s"] / max(direct["dicts_rows_per_s"], 1)
        self.say(f"     direct (i) JSON encoded {direct['encoded_rows_per_s']:,} rows/s, "
                 f"(ii) from dicts {direct['dicts_rows_per_s']:,} rows/s; SDK = "
                 f"{vs_encoded:.0f}% / {vs_dicts:.0f}% (target >= {INGEST_TARGET_PCT:.0f}%)")
        return {
            "sdk": sdk, "direct": direct, "compression_level": level,
            "sdk_pct_of_encoded": round(vs_encoded, 1), "sdk_pct_of_dicts": round(vs_dicts, 1),
            "target_pct": INGEST_TARGET_PCT,
            "target_met_vs_encoded": vs_encoded >= INGEST_TARGET_PCT,
            "target_met_vs_dicts": vs_dicts >= INGEST_TARGET_PCT,
        }

    # --- queries --------------------------------------------------------------------------

    def time_questions(self, phase: str) -> list[dict[str, Any]]:
        assert self.build is not None
        s = self.scale
        journey = (str(self.build["journey"][0]), str(self.build["journey"][1]))
        timings = []
        qs = queries.questions(journey)
        with self.progress() as bar:
            task = bar.add_task(f"queries {phase}", total=len(qs))
            for q in qs:
                t = queries.time_question(q, self.lake, s.cold_repeat, s.warm_repeat,
                                          s.cli_repeat)
                timings.append(dict(t.__dict__))
                bar.advance(task)
        self.say(f"[bold]queries[/bold] {phase}: warm medians "
                 + ", ".join(f"Q{t['key']} {t['warm_ms']:.0f}" for t in timings) + " ms")
        return timings

    def compact(self) -> dict[str, Any]:
        tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date()
        self.say("[bold]compact[/bold] xr.compact(root, before=tomorrow): every partition")
        before = queries.disk_usage(self.lake)
        with self.progress() as bar:
            task = bar.add_task("compacting", total=None)

            def step(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            result = xr.compact(self.lake, before=tomorrow, progress=step)
        after = queries.disk_usage(self.lake)
        info = {
            "seconds": round(result.seconds, 2), "partitions": len(result.partitions),
            "files_in": result.files_in, "files_out": result.files_out, "rows": result.rows,
            "bytes_in": result.bytes_in, "bytes_out": result.bytes_out,
            "errors": list(result.errors), "locked": list(result.locked),
            "disk_before": before, "disk_after": after,
        }
        self.say(f"     {result.files_in:,} files -> {result.files_out:,} in "
                 f"{result.seconds:.1f} s")
        return info

    # --- alternatives ---------------------------------------------------------------------

    def question_params(self) -> Params:
        assert self.build is not None
        since = dt.datetime.now(dt.UTC) - dt.timedelta(days=7)
        return Params(since, str(self.build["journey"][0]), str(self.build["journey"][1]))

    def alternatives(self) -> Alternatives:
        s = self.scale
        return Alternatives(self.lake, self.root, self.say, self.progress, s.alternatives_repeat, s.alternatives_budget_s)

    # --- memory ---------------------------------------------------------------------------

    def memory(self) -> dict[str, Any]:
        s = self.scale
        out = os.path.join(self.root, "memory.json")
        argv = [sys.executable, str(HERE / "memory_burst.py"), "--bound-mib",
                str(s.memory_bound_mib), "--factor", str(s.memory_factor), "--root",
                os.path.join(self.root, "memory-lake"), "--json", out]
        self.say(f"[bold]memory[/bold] burst of {s.memory_factor:g} x max_buffer_bytes="
                 f"{s.memory_bound_mib} MiB in a subprocess")
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=3600)
        if done.returncode != 0:
            raise RuntimeError(f"memory_burst.py failed: {done.stderr.strip()[-800:]}")
        result: dict[str, Any] = json.loads(Path(out).read_text())
        shutil.rmtree(os.path.join(self.root, "memory-lake"), ignore_errors=True)
        result["command"] = shlex.join(["python", "benchmarks/memory_burst.py", *argv[2:6]])
        self.say(f"     peak RSS - baseline = {result['peak_minus_baseline_bytes'] / 2**20:,.1f} "
                 f"MiB vs bound {s.memory_bound_mib} MiB "
                 f"({'within' if result['within_bound'] else '[red]over[/red]'}); "
                 f"{result['records_dropped']:,} records dropped and counted")
        return result


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", required=True, choices=list(SCALES),
                        help="; ".join(f"{k}: {v.runs:,} runs x {v.candidates} candidates"
                                       for k, v in SCALES.items()))
    parser.add_argument("--json", dest="json_path", required=True,
                        help="where to write the results (one JSON file)")
    parser.add_argument("--root", default=None,
                        help="working folder (must be absent or empty; default: a temp folder)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the working folder (lake, JSON documents, SQLite file)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help=f"comma-separated subset of {','.join(WORKLOADS)} (default: all)")
    parser.add_argument("--no-results-md", action="store_true",
                        help="do not write a dated file under benchmarks/results/")
    args = parser.parse_args(argv)
    chosen = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in chosen if w not in WORKLOADS]
    if unknown or not chosen:
        parser.error(f"--workloads: unknown {', '.join(unknown) or '(empty)'}; "
                     f"choose from {', '.join(WORKLOADS)}")
    args.workloads = [w for w in WORKLOADS if w in chosen]
    folder = os.path.dirname(os.path.abspath(args.json_path))
    if not os.path.isdir(folder):
        parser.error(f"--json: folder {folder} does not exist")
    if os.path.isdir(args.json_path):
        parser.error(f"--json: {args.json_path} is a folder; give a file path")
    if args.root is not None:
        if os.path.exists(args.root) and not os.path.isdir(args.root):
            parser.error(f"--root: {args.root} exists and is not a folder")
        if os.path.isdir(args.root) and os.listdir(args.root):
            parser.error(f"--root: {args.root} is not empty; give a new or empty folder")
    return args


def command_line(args: argparse.Namespace) -> str:
    parts = ["python", "benchmarks/run.py", "--scale", args.scale, "--json", args.json_path]
    if args.root:
        parts += ["--root", args.root]
    if args.keep:
        parts.append("--keep")
    if args.workloads != list(WORKLOADS):
        parts += ["--workloads", ",".join(args.workloads)]
    return shlex.join(parts)


def versions() -> dict[str, str]:
    out = dict(queries.versions())
    out["orjson"] = orjson.__version__
    out["sqlite"] = sqlite3.sqlite_version
    try:
        import psycopg

        out["psycopg"] = psycopg.__version__
    except ImportError:
        pass
    return out


def run(args: argparse.Namespace, root: str, console: Console) -> dict[str, Any]:
    suite = Suite(args, root, console)
    s = suite.scale
    rep = suite.report
    rep.update({
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "scale": args.scale, "params": dataclasses.asdict(s), "command": command_line(args),
        "machine": queries.machine_info(), "versions": versions(),
        "loadavg_start": os.getloadavg(), "root": root,
    })
    w = rep["workloads"]
    wants = set(args.workloads)
    if "hot_path" in wants:
        w["hot_path"] = suite.hot_path()
    if "ingest" in wants:
        w["ingest"] = suite.ingest()
    if wants & {"queries", "alternatives"}:
        rep["build"] = suite.build_lake()
        params = suite.question_params()
        if "queries" in wants:
            w["queries"] = {"lake_rows": queries.table_rows(suite.lake),
                       "before": suite.time_questions("as written")}
        alts = suite.alternatives()
        if "alternatives" in wants:
            w["alternatives"] = alts.run(params)
        rep["compaction"] = suite.compact()
        if "queries" in wants:
            w["queries"]["compaction"] = rep["compaction"]
            w["queries"]["after"] = suite.time_questions("after compaction")
        if "alternatives" in wants:
            alts.compacted(w["alternatives"], params)
    if "memory" in wants:
        w["memory"] = suite.memory()
    rep["loadavg_end"] = os.getloadavg()
    rep["seconds"] = round(time.perf_counter() - suite.started, 1)
    return rep


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=True)
    made_root = args.root is None or not os.path.exists(args.root)
    root = args.root or tempfile.mkdtemp(prefix="xray-bench-run-")
    os.makedirs(root, exist_ok=True)
    root = os.path.abspath(root)
    # A private spool: records of this run never mix with any other lake's on this machine.
    os.environ["XRAY_LAKE_SPOOL"] = os.path.join(root, "spool")
    xr.configure(spool_dir=os.environ["XRAY_LAKE_SPOOL"])
    console.print(f"[bold]xray-lake benchmark suite[/bold], scale {args.scale} "
                  f"({SCALES[args.scale].runs:,} runs x {SCALES[args.scale].candidates} "
                  f"candidates), workloads {', '.join(args.workloads)}; working folder {root}")
    try:
        result = run(args, root, console)
    finally:
        if not args.keep:
            if made_root:
                shutil.rmtree(root, ignore_errors=True)
            else:
                for entry in os.listdir(root):
                    path = os.path.join(root, entry)
                    if os.path.isdir(path):
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        os.unlink(path)
    Path(args.json_path).write_text(json.dumps(result, indent=2, default=str))
    print(run_report.markdown(result))
    console.print(f"results: {args.json_path} ({result['seconds']:,.0f} s)")
    if not args.no_results_md:
        saved = run_report.save(result)
        console.print(f"wrote {saved}; update the summary in benchmarks/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
