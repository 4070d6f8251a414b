"""The canonical questions (docs/questions.md) timed on a lake built with the SDK.

Run:
    python benchmarks/queries.py --runs N --candidates K [--root DIR] [--reuse] [--json PATH]

`--root s3://bucket/prefix` builds and queries a lake on object storage; the endpoint and
credentials come from the AWS environment variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...).

Build: N runs of a decorated five-stage pipeline (retrieval -> filtering with reason labels
-> scoring -> filtering -> ranking, about K candidates per stage) recorded through the real
SDK and writer into `--root` (default /tmp/xray-bench-<N>x<K>). Runs are spread over the last
14 days by shifting the SDK's clock, across three pipeline labels; about 8% of runs have a
filter that drops > 90%, 3% of reranks keep their input order, 0.5% of runs fail in the scorer,
and one label's scores move up 8% in the last 7 days (so questions 1, 5, 6, 8 find something).
`--reuse` skips the build when the root already holds data (build figures then come from
`<root>/_benchmark.json`, written by the build).

Queries: each question's documented Python call and CLI command (labels, stage names and ids
adapted to this lake), timed
  * cold: a fresh `xr.Lake(root)` per measurement and its first query (median of 3; the
    OS page cache is warm, so this is DuckDB's cold state, not a cold disk);
  * warm: one Lake, one warm-up, then the median of 5;
  * CLI: `xray-lake ...` in a subprocess, process start included (median of 5).
Prints a table, writes `--json` and appends a dated section to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Annotated, Any

import duckdb
import polars as pl
import pyarrow as pa
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

import xray_lake as xr
from xray_lake.cli.runs import Status, runs_sql
from xray_lake.query.builder import stage
from xray_lake.query.questions import SCORE_DRIFT as Q5_SQL
from xray_lake.query.questions import SLOWEST_STAGE_P90 as Q7_SQL
from xray_lake.query.questions import TOP_DROP_REASONS as Q3_SQL
from xray_lake.sdk import recording
from xray_lake.storage.object_store import open_store

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
TARGETS = {"cli_ms": 1000.0, "find_cold_ms": 300.0, "find_warm_ms": 50.0,
           "journey_warm_ms": 10.0}
"""Issue 14's targets at 100k runs: each question's CLI, `Lake.find` headline, journey."""
META_FILE = "_benchmark.json"
TABLES = ("runs", "stages", "candidates")
DAYS = 14
SEED = 20240501

# label -> (run id prefix, share of runs)
LABELS: dict[str, tuple[str, float]] = {
    "product_search": ("ps", 0.55),
    "similar_items": ("si", 0.30),
    "ads_ranking": ("ad", 0.15),
}
SHIFTED_LABEL = "similar_items"  # its scores are 8% higher in the last 7 days (question 5)
SCORE_SHIFT = 1.08
HEAVY_DROP_SHARE = 0.08  # runs whose eligibility filter drops 90-99%
KEEP_ORDER_SHARE = 0.03  # reranks that return their input order (tau = 1, question 6)
FAILURE_SHARE = 0.005  # runs whose scorer raises (question 8)

ISSUES = ("out_of_stock", "wrong_category", "price_too_high")
ISSUE_TEXT = {
    "out_of_stock": "no stock in any warehouse",
    "wrong_category": "category does not match the query",
    "price_too_high": "price is above the shopper's cap",
}
QUALITY = ("low_rating", "seller_blocked")
QUALITY_TEXT = {"low_rating": "rating below 2.5", "seller_blocked": "seller is blocked"}
BRANDS = ("Aster", "Boreal", "Cobalt", "Dune", "Ember", "Fjord", "Gala", "Harbor")
NOUNS = ("dress", "jeans", "sneaker", "boot", "jacket", "skirt", "hoodie", "bag")

Candidate = dict[str, Any]


# --- the pipeline ----------------------------------------------------------------------


class ScorerTimeout(TimeoutError):
    """The relevance model did not answer; `code` becomes the error_code."""

    code = "SCORER_TIMEOUT"


@dataclass(slots=True)
class Plan:
    """What one run does, drawn by the driver (so the stages themselves draw nothing)."""

    offset: int
    cut: float  # eligibility drops candidates with q < cut
    cut2: float  # quality-filter drops candidates with q2 < cut2
    score_mult: float
    keep_order: bool
    fail: bool


class Pipeline:
    """retrieve -> eligibility -> relevance -> quality-filter -> rerank; one run per `search`."""

    def __init__(self, run_id: str, pool: list[Candidate], size: int) -> None:
        self.run_id = run_id
        self.pool = pool
        self.size = size
        self.first_dropped: str | None = None

    @xr.entrypoint
    def search(self, query: str, plan: Plan) -> list[str]:
        found = self.retrieve(query, plan.offset)
        verdicts = self.eligibility(found, plan.cut)
        dropped = next((v.item for v in verdicts if not v.passed), None)
        self.first_dropped = None if dropped is None else dropped["id"]
        kept = [v.item for v in verdicts if v.passed]
        scored = self.relevance(kept, plan.score_mult, plan.fail)
        checked = self.quality([s.item for s in scored], plan.cut2)
        ranked = self.rerank([v.item for v in checked if v.passed], plan.keep_order)
        return [c["id"] for c in ranked[:10]]

    @xr.retrieval_stage("retrieve", id="id")
    def retrieve(self, query: str, offset: int) -> list[Candidate]:
        return self.pool[offset:offset + self.size]

    @xr.filtering_stage("eligibility", id="id")
    def eligibility(self, items: Annotated[list[Candidate], xr.Candidates()],
                    cut: float) -> list[xr.Filtered[Candidate]]:
        f = xr.Filtered
        return [f(c, True) if c["q"] >= cut else f(c, False, c["issue"], ISSUE_TEXT[c["issue"]])
                for c in items]

    @xr.scoring_stage("relevance", id="id")
    def relevance(self, items: Annotated[list[Candidate], xr.Candidates()], mult: float,
                  fail: bool) -> list[xr.Scored[Candidate]]:
        if fail:
            raise ScorerTimeout("relevance model did not answer within 200 ms")
        s = xr.Scored
        return [s(c, c["s"] * mult) for c in items]

    @xr.filtering_stage("quality-filter", id="id")
    def quality(self, items: Annotated[list[Candidate], xr.Candidates()],
                cut: float) -> list[xr.Filtered[Candidate]]:
        f = xr.Filtered
        return [f(c, True) if c["q2"] >= cut else f(c, False, c["bad"], QUALITY_TEXT[c["bad"]])
                for c in items]

    @xr.ranking_stage("rerank", id="id")
    def rerank(self, items: Annotated[list[Candidate], xr.Candidates()],
               keep_order: bool) -> list[Candidate]:
        return list(items) if keep_order else sorted(items, key=itemgetter("s"), reverse=True)


@xr.pipeline("product_search", id="run_id")
class ProductSearch(Pipeline):
    pass


@xr.pipeline("similar_items", id="run_id")
class SimilarItems(Pipeline):
    pass


@xr.pipeline("ads_ranking", id="run_id")
class AdsRanking(Pipeline):
    pass


PIPELINES: dict[str, type[Pipeline]] = {
    "product_search": ProductSearch, "similar_items": SimilarItems, "ads_ranking": AdsRanking,
}


def make_pool(size: int, rng: random.Random) -> list[Candidate]:
    """Candidate dicts of about 150 bytes of JSON, made once and sliced per run."""
    pool: list[Candidate] = []
    for i in range(size):
        brand, noun = rng.choice(BRANDS), rng.choice(NOUNS)
        pool.append({
            "id": f"c-{i:07d}",
            "title": f"{brand} {noun} {i}",
            "brand": brand,
            "price": round(rng.uniform(5, 300), 2),
            "rating": round(rng.uniform(1, 5), 1),
            "q": round(rng.random(), 4),
            "q2": round(rng.random(), 4),
            "s": round(rng.random(), 4),
            "issue": rng.choice(ISSUES),
            "bad": rng.choice(QUALITY),
        })
    return pool


# --- building the lake -----------------------------------------------------------------


class Clock:
    """Stands in for the SDK's wall clock: the simulated run start plus real elapsed time."""

    def __init__(self) -> None:
        self.base = time.time()
        self.perf0 = time.perf_counter()

    def set(self, epoch_s: float) -> None:
        self.base, self.perf0 = epoch_s, time.perf_counter()

    def __call__(self) -> float:
        return self.base + (time.perf_counter() - self.perf0)


@dataclass
class BuildInfo:
    runs: int
    candidates: int
    seconds: float
    sdk_rows: int
    runs_per_s: float
    rows_per_s: float
    throttled_s: float
    failures: int
    dropped: int
    settings: dict[str, Any]
    journey: tuple[str, str]
    span: tuple[str, str]
    loadavg_before: tuple[float, float, float]
    loadavg_after: tuple[float, float, float]
    stats: dict[str, Any] = field(default_factory=dict)


def writer_settings() -> dict[str, Any]:
    """Large files: flush by size only (about 2M candidate rows per flush across partitions)."""
    return {
        "fsync": False,
        "flush_rows": 2_000_000,
        "flush_bytes": 768 * 2**20,
        "flush_interval_s": 3600.0,
        "max_buffer_bytes": 3 * 2**30,
        "drain_interval_s": 0.25,
        "exit_timeout_s": 600.0,
    }


STEADY_FLUSHES = 360
"""Flushes of a steady one-hour load at the default cadence (flush_interval_s = 10 s)."""


def steady_settings() -> dict[str, Any]:
    """The SDK's defaults, as a service runs it, except fsync (off, for build speed) and the
    timed flush (the driver flushes STEADY_FLUSHES times instead, whatever the machine's
    speed, so the lake has the files of one hour at the default 10 s cadence)."""
    return {"fsync": False, "flush_interval_s": 3600.0, "exit_timeout_s": 600.0}


def build(root: str, n_runs: int, size: int, console: Console,
          settings: dict[str, Any] | None = None, flush_every: int = 0) -> BuildInfo:
    """Record `n_runs` runs through the decorated pipeline into `root`.

    `flush_every`: also `xr.flush()` after every that many runs (a file per partition each
    time, whatever the machine's speed), to leave the many small files of a busy service.
    """
    settings = settings or writer_settings()
    xr.configure(root=root, **settings)
    rng = random.Random(SEED)
    pool = make_pool(max(4 * size, 20_000), rng)
    labels = list(LABELS)
    weights = [share for _, share in LABELS.values()]
    end = time.time()
    start = end - DAYS * 86_400
    week_ago = end - 7 * 86_400
    step = (end - start) / max(n_runs, 1)
    clock = Clock()
    real_clock = recording._clock
    recording._clock = clock
    limit = xr.get_settings().max_buffer_bytes
    check_every = max(1, 20_000 // (5 * size))
    journey: tuple[str, str] | None = None
    failures = 0
    throttled = 0.0
    load_before = os.getloadavg()
    columns = (TextColumn("[bold]building"), BarColumn(), MofNCompleteColumn(),
               TextColumn("runs"), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn())
    t0 = time.perf_counter()
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("build", total=n_runs, rate="")
            for i in range(n_runs):
                label = rng.choices(labels, weights)[0]
                when = start + i * step
                clock.set(when)
                heavy = rng.random() < HEAVY_DROP_SHARE
                mult = rng.uniform(0.97, 1.03)
                if label == SHIFTED_LABEL and when >= week_ago:
                    mult *= SCORE_SHIFT
                plan = Plan(
                    offset=rng.randrange(len(pool) - size + 1),
                    cut=rng.uniform(0.9, 0.99) if heavy else rng.uniform(0.02, 0.3),
                    cut2=rng.uniform(0.02, 0.15),
                    score_mult=mult,
                    keep_order=rng.random() < KEEP_ORDER_SHARE,
                    fail=rng.random() < FAILURE_SHARE,
                )
                run_id = f"{LABELS[label][0]}-{i:07d}"
                pipe = PIPELINES[label](run_id, pool, size)
                try:
                    pipe.search(f"{rng.choice(NOUNS)} by {rng.choice(BRANDS)}", plan)
                except ScorerTimeout:
                    failures += 1
                else:
                    if journey is None and i >= n_runs // 2 and pipe.first_dropped:
                        journey = (run_id, pipe.first_dropped)
                if flush_every and (i + 1) % flush_every == 0:
                    xr.flush()
                if (i + 1) % check_every == 0 or i + 1 == n_runs:
                    throttled += _throttle(limit)
                    done = i + 1
                    rows = xr.stats()["candidates_recorded"]
                    elapsed = time.perf_counter() - t0
                    progress.update(task, completed=done,
                                    rate=f"{rows / max(elapsed, 1e-9) / 1e3:,.0f}k rows/s")
            progress.update(task, rate="flushing")
            flushed = xr.flush()
            seconds = time.perf_counter() - t0
    finally:
        recording._clock = real_clock
    stats = xr.stats()
    if not flushed or stats["dropped_total"]:
        console.print(f"[red]flush incomplete or records dropped: {stats['dropped']}")
    rows = int(stats["rows_written"].get("candidates", 0))
    assert journey is not None, "no run dropped a candidate; use more runs"
    return BuildInfo(
        runs=n_runs, candidates=size, seconds=seconds, sdk_rows=rows,
        runs_per_s=n_runs / seconds, rows_per_s=rows / seconds, throttled_s=throttled,
        failures=failures, dropped=int(stats["dropped_total"]), settings=settings,
        journey=journey,
        span=(_iso(start), _iso(end)), loadavg_before=load_before,
        loadavg_after=os.getloadavg(),
        stats={k: v for k, v in stats.items() if k not in ("internal_errors",)},
    )


def settle(root: str, console: Console) -> dict[str, Any]:
    """Run the writer's background compactor (the same component, default settings) tick after
    tick until a tick merges nothing: the lake as a service leaves it once its compactor has
    caught up. Ticks run back to back instead of every compaction_interval_s."""
    from xray_lake.storage.compaction.background import BackgroundCompactor

    xr.configure(root=root, fsync=False)
    compactor = BackgroundCompactor(root, xr.get_settings())
    t0 = time.perf_counter()
    merges = -1.0
    while compactor.stats()["merges"] != merges:
        merges = compactor.stats()["merges"]
        compactor.tick()
        console.print(f"settling: {compactor.stats()}")
    return {**compactor.stats(), "wall_s": round(time.perf_counter() - t0, 1)}


def _throttle(limit: int) -> float:
    """Wait while the writer holds more than half of what records may hold (its
    `buffer_limit_bytes`, a share of `max_buffer_bytes`): the SDK never blocks, it drops past
    that, so the driver slows down instead. Returns seconds waited."""
    stats = xr.stats()
    hold = int(stats.get("buffer_limit_bytes") or limit)
    if stats["buffered_bytes"] < hold // 2:
        return 0.0
    t0 = time.perf_counter()
    while xr.stats()["buffered_bytes"] > hold // 4:
        time.sleep(0.05)
    return time.perf_counter() - t0


def _iso(epoch_s: float) -> str:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).isoformat(timespec="seconds")


def disk_usage(root: str) -> dict[str, dict[str, int]]:
    """Per table: published Parquet files and their bytes (an `s3://` root: one LIST each)."""
    usage: dict[str, dict[str, int]] = {}
    if "://" in root:
        store = open_store(root)
        for table in TABLES:
            found = [e for e in store.walk(table) if e.name.endswith(".parquet")
                     and not e.name.startswith(".")]
            usage[table] = {"files": len(found), "bytes": sum(e.size for e in found)}
        return usage
    for table in TABLES:
        files = size = 0
        for dirpath, _dirs, names in os.walk(os.path.join(root, table)):
            for name in names:
                if name.endswith(".parquet") and not name.startswith("."):
                    files += 1
                    size += os.path.getsize(os.path.join(dirpath, name))
        usage[table] = {"files": files, "bytes": size}
    return usage


def file_layout(root: str) -> dict[str, int]:
    """Files in sealed and unsealed partitions (as background compaction defines them), and
    the sealed partitions `xray-lake compact` would still merge (0: as compact as it makes
    them). Local roots only."""
    from xray_lake.storage.compaction.background import GRACE_S, SMALL_MIN_FILES, SMALL_TABLES
    from xray_lake.storage.compaction.local import data_files, partitions
    from xray_lake.storage.compaction.plan import DEFAULT_TARGET_SIZE, dated_before

    now = dt.datetime.now(dt.UTC)
    sealed = (now - dt.timedelta(seconds=GRACE_S)).date().isoformat()
    compact_would = dated_before(sealed, DEFAULT_TARGET_SIZE)
    out = {"sealed_files": 0, "unsealed_files": 0, "sealed_left_to_merge": 0,
           "unsealed_partitions": 0, "unsealed_small_tables_files": 0}
    for part in partitions(root, None):
        files = data_files(os.path.join(root, part.rel))
        if part.date < sealed:
            out["sealed_files"] += len(files)
            out["sealed_left_to_merge"] += compact_would(part, files)
        else:
            out["unsealed_files"] += len(files)
            out["unsealed_partitions"] += 1
            if part.table in SMALL_TABLES:
                out["unsealed_small_tables_files"] += len(files)
    out["small_min_files"] = SMALL_MIN_FILES
    return out


def table_rows(root: str) -> dict[str, int]:
    with xr.Lake(root) as lake:
        return {t: int(lake.sql(f"select count(*) as n from {t}")["n"][0]) for t in TABLES}


# --- the questions ---------------------------------------------------------------------




Q1 = {"stage": {"type": "filtering", "$failRatio": {"$gt": 0.9}}}
Q2 = {"pipeline": {"label": "product_search"},
      "stage": {"type": "filtering", "$failRatio": {"$gt": 0.9}}}
Q6 = {"stage": {"type": "ranking", "$rankKendallTau": {"$gt": 0.95}}}
Q8 = {"pipeline": {"status": "failure"}, "stage": {"status": "failure"}}


@dataclass(frozen=True)
class Question:
    key: str
    title: str
    python: str  # the call, as shown in the results
    call: Callable[[xr.Lake], int]  # runs it, returns the rows of the answer
    cli: list[str]  # arguments after `xray-lake` (`--root` is appended)


def _height(frame: pl.DataFrame) -> int:
    return frame.height


HEADLINE_COLUMNS = ("run_id", "label", "name", "fail_ratio", "started_at")
HEADLINE_BUILDER = ("lake.query().where(stage.type == 'filtering', stage.fail_ratio > 0.9)"
                    ".select(stage.run_id, stage.label, stage.name, stage.fail_ratio, "
                    "stage.started_at)")


def _headline_builder(lake: xr.Lake) -> int:
    query = lake.query().where(stage.type == "filtering", stage.fail_ratio > 0.9).select(
        stage.run_id, stage.label, stage.name, stage.fail_ratio, stage.started_at)
    return _height(query.to_polars())


def _q3(lake: xr.Lake) -> int:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=7)
    return _height(lake.sql(Q3_SQL, {"day": since.date().isoformat(), "since": since}))


def _runs_failure(lake: xr.Lake) -> int:
    sql, params = runs_sql([], Status.failure, None, None, 20)
    return _height(lake.sql(sql, params))


def questions(journey: tuple[str, str]) -> list[Question]:
    run_id, cand = journey
    dumps = json.dumps
    return [
        Question("1", "filtering stage dropped > 90%", f"lake.find({dumps(Q1)})",
                 lambda lake: _height(lake.find(Q1)), ["query", "--where", dumps(Q1)]),
        Question("1b", "same, builder, the 5 columns it asks for", HEADLINE_BUILDER,
                 _headline_builder, ["query", "--where", dumps(Q1), "--columns",
                                     ",".join(HEADLINE_COLUMNS)]),
        Question("2", "same, one label, per run", f"lake.find({dumps(Q2)}, per='run')",
                 lambda lake: _height(lake.find(Q2, per="run")),
                 ["query", "--where", dumps(Q2), "--per", "run"]),
        Question("3", "top drop reasons, last 7 days", "lake.sql(Q3_SQL, {day, since})", _q3,
                 ["stats", "--type", "filtering", "--since", "7d"]),
        Question("4", "why did X not reach the ranking of R",
                 f"lake.journey({run_id!r}, {cand!r})",
                 lambda lake: lake.journey(run_id, cand).steps.height, ["why", run_id, cand]),
        Question("5", "median score moved > 2% week on week", "lake.sql(Q5_SQL, {'pct': 2})",
                 lambda lake: _height(lake.sql(Q5_SQL, {"pct": 2})),
                 ["query", Q5_SQL.replace("$pct", "2")]),
        Question("6", "rankers with Kendall tau > 0.95", f"lake.find({dumps(Q6)})",
                 lambda lake: _height(lake.find(Q6)), ["query", "--where", dumps(Q6)]),
        Question("7", "slowest stage per label at p90", "lake.sql(Q7_SQL)",
                 lambda lake: _height(lake.sql(Q7_SQL)), ["query", Q7_SQL]),
        Question("8", "failed runs, code and failing stage", f"lake.find({dumps(Q8)})",
                 lambda lake: _height(lake.find(Q8)), ["query", "--where", dumps(Q8)]),
        Question("8b", "`runs --status failure` (its SQL)", "lake.sql(*runs_sql(status=failure))",
                 _runs_failure, ["runs", "--status", "failure"]),
    ]


@dataclass
class Timing:
    key: str
    title: str
    python: str
    cli: str
    rows: int
    open_ms: float
    cold_ms: float
    warm_ms: float
    cli_ms: float | None  # None: not timed (cli_repeat=0)
    cold_all: list[float]
    warm_all: list[float]
    cli_all: list[float]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def cli_base() -> list[str]:
    exe = shutil.which("xray-lake")
    return [exe] if exe else [sys.executable, "-m", "xray_lake"]


def time_cli(args: Sequence[str], repeat: int) -> list[float]:
    times: list[float] = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        done = subprocess.run(list(args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              check=False)
        times.append(_ms(time.perf_counter() - t0))
        if done.returncode != 0:
            raise RuntimeError(f"{shlex.join(args)} failed: {done.stderr.decode()[:500]}")
    return times


def time_question(q: Question, root: str, cold_repeat: int, warm_repeat: int,
                  cli_repeat: int) -> Timing:
    cold: list[float] = []
    opens: list[float] = []
    rows = 0
    for _ in range(cold_repeat):
        t0 = time.perf_counter()
        lake = xr.Lake(root)
        t1 = time.perf_counter()
        rows = q.call(lake)
        cold.append(_ms(time.perf_counter() - t0))
        opens.append(_ms(t1 - t0))
        lake.close()
    warm: list[float] = []
    with xr.Lake(root) as lake:
        q.call(lake)  # warm-up
        for _ in range(warm_repeat):
            t0 = time.perf_counter()
            q.call(lake)
            warm.append(_ms(time.perf_counter() - t0))
    argv = [*cli_base(), *q.cli, "--root", root]
    clis = time_cli(argv, cli_repeat) if cli_repeat else []
    shown = shlex.join(["xray-lake", *q.cli, "--root", root])
    return Timing(q.key, q.title, q.python, shown, rows, statistics.median(opens),
                  statistics.median(cold), statistics.median(warm),
                  statistics.median(clis) if clis else None, cold, warm, clis)


# --- reporting -------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem_gib = round(pages / 2**30, 1)
    except (ValueError, OSError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib,
            "platform": platform.platform()}


def versions() -> dict[str, str]:
    return {"python": platform.python_version(), "xray_lake": xr.__version__,
            "duckdb": duckdb.__version__, "polars": pl.__version__, "pyarrow": pa.__version__}


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _cli_cell(value: float | None) -> str:
    return "not timed" if value is None else f"{value:,.0f}"


def results_table(timings: list[Timing], title: str) -> Table:
    table = Table(title=title, header_style="bold")
    for name, justify in (("#", "right"), ("question", "left"), ("rows", "right"),
                          ("cold ms", "right"), ("warm ms", "right"), ("CLI ms", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for t in timings:
        table.add_row(t.key, t.title, f"{t.rows:,}", f"{t.cold_ms:,.1f}", f"{t.warm_ms:,.1f}",
                      _cli_cell(t.cli_ms))
    return table


def _settled_lines(report: dict[str, Any]) -> list[str]:
    settled = report.get("settled")
    if not settled:
        return []
    return [f"Then the writer's background compactor (default settings) ran tick after tick "
            f"until idle: {settled['ticks']} ticks, {settled['files_in']:,} files merged into "
            f"{settled['merges']:,}, {settled['wall_s']:,.1f} s; no `xray-lake compact`.", ""]


def targets_markdown(report: dict[str, Any], timings: list[Timing]) -> list[str]:
    """Issue 14's targets against this run's figures (medians), met or not."""
    by_key = {t.key: t for t in timings}

    def verdict(value: float | None, bound: float) -> str:
        return "not timed" if value is None else ("met" if value <= bound else "**missed**")

    worst = max((t for t in timings if t.cli_ms is not None), key=lambda t: t.cli_ms or 0.0,
                default=None)
    q1, q4 = by_key["1"], by_key["4"]
    rows = [
        ("each question's CLI, cold process", f"<= {TARGETS['cli_ms']:,.0f} ms",
         "—" if worst is None else f"worst: #{worst.key} {_cli_cell(worst.cli_ms)} ms",
         verdict(None if worst is None else worst.cli_ms, TARGETS["cli_ms"])),
        ("`Lake.find` headline (#1), cold", f"<= {TARGETS['find_cold_ms']:,.0f} ms",
         f"{q1.cold_ms:,.1f} ms", verdict(q1.cold_ms, TARGETS["find_cold_ms"])),
        ("`Lake.find` headline (#1), warm", f"<= {TARGETS['find_warm_ms']:,.0f} ms",
         f"{q1.warm_ms:,.1f} ms", verdict(q1.warm_ms, TARGETS["find_warm_ms"])),
        ("journey of one candidate (#4), warm", f"<= {TARGETS['journey_warm_ms']:,.0f} ms",
         f"{q4.warm_ms:,.1f} ms", verdict(q4.warm_ms, TARGETS["journey_warm_ms"])),
    ]
    layout = report["lake"].get("layout")
    if layout:
        rows.append((
            "files: no more than the compacted lake's + the unsealed partitions'",
            "0 sealed partitions left to merge",
            f"{layout['sealed_files']:,} files in sealed partitions, "
            f"{layout['sealed_left_to_merge']} left to merge; {layout['unsealed_files']:,} in "
            f"{layout['unsealed_partitions']} unsealed partitions "
            f"({layout['unsealed_small_tables_files']:,} of them runs/stages)",
            "met" if layout["sealed_left_to_merge"] == 0 else "**missed**"))
    lines = ["", "Targets (issue 14):", "", "| target | bound | measured | |",
             "| --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return [*lines, ""]


def markdown(report: dict[str, Any], timings: list[Timing], command: str) -> str:
    b, lake = report["build"], report["lake"]
    params = report["params"]
    lines = [
        "",
        f"## Canonical questions: {params['runs']:,} runs x {params['candidates']:,} "
        f"candidates ({report['date']})",
        "",
        f"`{command}`",
        "",
        f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, "
        f"{report['machine']['memory_gib']} GiB, shared with other jobs. Load average "
        f"(1/5/15 min) at the start of the queries: "
        f"{', '.join(f'{x:.2f}' for x in report['loadavg']['queries_before'])}; at the end: "
        f"{', '.join(f'{x:.2f}' for x in report['loadavg']['queries_after'])}. "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + ".",
        "",
        f"Lake: {lake['rows']['runs']:,} runs, {lake['rows']['stages']:,} stages, "
        f"{lake['rows']['candidates']:,} candidate rows; "
        + "; ".join(f"{t} {u['files']:,} files {_mib(u['bytes'])}"
                    for t, u in lake["disk"].items())
        + f" (total {_mib(lake['bytes_total'])}).",
        "",
        f"Build through the SDK ({'reused, figures from its build' if report['reused'] else 'this run'}"
        f"): {b['seconds']:,.1f} s, {b['runs_per_s']:,.0f} runs/s, "
        f"{b['rows_per_s']:,.0f} candidate rows/s (writer: "
        f"{b['settings'].get('writer', 'the default')}, fsync off; load average during the build {b['loadavg_before'][0]:.2f} -> "
        f"{b['loadavg_after'][0]:.2f}; {b['throttled_s']:.1f} s waiting for the writer; "
        f"{b['dropped']} records dropped).",
        "",
        *_settled_lines(report),
        "Medians in ms. cold: fresh `xr.Lake(root)` + first query (median of 3, page cache "
        "warm); warm: same Lake, median of 5 after a warm-up; CLI: the command in a "
        f"subprocess, median of {report.get('cli_repeat', 5)} (`xray-lake --version` alone: "
        f"{report['cli_startup_ms']:,.0f} ms). Opening a Lake: "
        f"{statistics.median(t.open_ms for t in timings):,.1f} ms.",
        "",
        "| # | question | Python call | rows | cold | warm | CLI |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for t in timings:
        call = t.python.replace("|", "\\|")
        lines.append(f"| {t.key} | {t.title} | `{call}` | {t.rows:,} | {t.cold_ms:,.1f} | "
                     f"{t.warm_ms:,.1f} | {_cli_cell(t.cli_ms)} |")
    lines += targets_markdown(report, timings)
    lines += ["", "<details><summary>CLI commands</summary>", "", "```bash"]
    lines += [t.cli for t in timings]
    lines += ["```", "", "</details>", ""]
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------


def read_meta(root: str) -> str | None:
    """`<root>/_benchmark.json` (local or `s3://`), or None."""
    if "://" in root:
        data = open_store(root).read(META_FILE)
        return None if data is None else data.decode()
    path = Path(root) / META_FILE
    return path.read_text() if path.exists() else None


def write_meta(root: str, text: str) -> None:
    if "://" in root:
        open_store(root).put(META_FILE, text.encode())
    else:
        (Path(root) / META_FILE).write_text(text)


def has_data(root: str) -> bool:
    return any(disk_usage(root)[t]["files"] for t in TABLES)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--candidates", type=int, default=1000, help="per stage, about")
    parser.add_argument("--root", default=None, help="lake root (default /tmp/xray-bench-NxK)")
    parser.add_argument("--reuse", action="store_true",
                        help="skip the build when the root already holds data")
    parser.add_argument("--json", dest="json_path", default=None)
    parser.add_argument("--cli-repeat", type=int, default=5,
                        help="CLI runs per question (median); 0 skips the CLI timings")
    parser.add_argument("--steady", action="store_true",
                        help="build as a service writes: default settings (background "
                             "compaction on), one flush per 10 s of an hour-long load")
    parser.add_argument("--build-only", action="store_true", help="build, then stop")
    parser.add_argument("--settle", action="store_true",
                        help="after the build, run the background compactor until it is idle")
    parser.add_argument("--no-results-md", action="store_true",
                        help="do not append to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    root = args.root or f"/tmp/xray-bench-{args.runs}x{args.candidates}"
    console = Console(stderr=True)
    meta_text = read_meta(root)
    reused = args.reuse and has_data(root) and meta_text is not None
    if reused:
        assert meta_text is not None
        meta = json.loads(meta_text)
        if (meta["build"]["runs"], meta["build"]["candidates"]) != (args.runs, args.candidates):
            console.print(f"[yellow]{root} was built with --runs {meta['build']['runs']} "
                          f"--candidates {meta['build']['candidates']}; reporting those")
        build_info = meta["build"]
        console.print(f"reusing {root} (built {build_info['span'][1]})")
    else:
        if has_data(root):
            hint = ("it has no " + META_FILE + " (not built by this script)" if args.reuse
                    else "pass --reuse, or remove it")
            console.print(f"[red]{root} already holds a lake: {hint}")
            return 2
        if args.steady:
            info = build(root, args.runs, args.candidates, console, steady_settings(),
                         flush_every=max(1, args.runs // STEADY_FLUSHES))
        else:
            info = build(root, args.runs, args.candidates, console)
        build_info = dataclasses.asdict(info)
        write_meta(root, json.dumps({"build": build_info}, indent=2, default=str))
    if args.settle:
        meta = json.loads(read_meta(root) or "{}")
        meta["settled"] = settle(root, console)
        write_meta(root, json.dumps(meta, indent=2, default=str))
    if args.build_only:
        return 0
    meta_all = json.loads(read_meta(root) or "{}")
    journey = (str(build_info["journey"][0]), str(build_info["journey"][1]))
    disk = disk_usage(root)
    rows = table_rows(root)
    console.print(f"lake {root}: " + ", ".join(f"{t} {rows[t]:,} rows / {disk[t]['files']} "
                                               f"files / {_mib(disk[t]['bytes'])}"
                                               for t in TABLES))
    console.print(f"build: {build_info['seconds']:,.1f} s, {build_info['runs_per_s']:,.0f} "
                  f"runs/s, {build_info['rows_per_s']:,.0f} candidate rows/s")

    load_before = os.getloadavg()
    startup = statistics.median(time_cli([*cli_base(), "--version"], 5))
    timings: list[Timing] = []
    qs = questions(journey)
    with Progress(TextColumn("[bold]timing"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=True) as progress:
        task = progress.add_task("", total=len(qs))
        for q in qs:
            progress.update(task, description=f"question {q.key}")
            timings.append(time_question(q, root, cold_repeat=3, warm_repeat=5,
                                         cli_repeat=args.cli_repeat))
            progress.advance(task)
    load_after = os.getloadavg()

    n_runs, size = int(build_info["runs"]), int(build_info["candidates"])
    Console().print(results_table(
        timings, f"{n_runs:,} runs x {size:,} candidates: medians, ms "
                 f"(load {load_before[0]:.2f} -> {load_after[0]:.2f})"))
    command = f"python benchmarks/queries.py --runs {args.runs} --candidates {args.candidates}"
    if args.root:
        command += f" --root {shlex.quote(args.root)}"
    if args.reuse:
        command += " --reuse"
    if args.json_path:
        command += f" --json {shlex.quote(args.json_path)}"
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": machine_info(),
        "versions": versions(),
        "params": {"runs": n_runs, "candidates": size, "root": root, "days": DAYS,
                   "labels": list(LABELS)},
        "reused": reused,
        "build": build_info,
        "lake": {"rows": rows, "disk": disk,
                 "bytes_total": sum(u["bytes"] for u in disk.values()),
                 "files_total": sum(u["files"] for u in disk.values()),
                 "layout": None if "://" in root else file_layout(root)},
        "settled": (meta_all or {}).get("settled"),
        "loadavg": {"queries_before": load_before, "queries_after": load_after},
        "cli_startup_ms": startup,
        "cli_repeat": args.cli_repeat,
        "questions": [t.__dict__ for t in timings],
    }
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=2, default=str))
    if not args.no_results_md:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d-%H%M")
        kind = "-steady" if report.get("settled") or args.steady else ""
        path = RESULTS_DIR / f"{stamp}-queries-{n_runs}x{size}{kind}.md"
        path.write_text("# Canonical questions\n" + markdown(report, timings, command),
                        encoding="utf-8")
        console.print(f"wrote {path.relative_to(HERE.parent)}; update RESULTS.md's rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
