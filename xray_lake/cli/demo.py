"""`xray-lake demo`: record the fashion-search demo into a lake and answer the headline question.

The point is a first minute with the product: one command fills a lake, shows what was
written, answers "which runs had a filtering stage eliminate more than 90% of its
candidates?" with the SQL that did it, and prints the next commands to try.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from xray_lake.cli import resolve_root, root_flag, stderr, stdout
from xray_lake.cli.help import Command
from xray_lake.cli.output import RootOption, StorageOption, human_bytes
from xray_lake.cli.progress import progress_bar

if TYPE_CHECKING:  # loaded when the command runs (see the package docstring)
    from xray_lake.demo.fashion_search import DemoSummary
    from xray_lake.query.lake import Lake

HEADLINE_SQL = """\
select run_id, label, name as stage, n_in, n_out,
       round(fail_ratio, 3) as fail_ratio
from stages
where type = 'filtering' and fail_ratio > 0.9
order by fail_ratio desc, n_in desc
limit 10"""

HEADLINE_COUNT_SQL = """\
select count(distinct run_id) as runs
from stages
where type = 'filtering' and fail_ratio > 0.9"""

HELP = (
    "Record realistic runs of a fashion search engine into the lake, then query them.\n\n"
    "Two pipelines (fashion_search and a smaller similar_items) run with varied queries: in "
    "some runs a filter drops over 90% of the candidates, and about 2% of runs fail with a "
    "catalog timeout. Prints what was written, the runs where a filtering stage eliminated "
    "more than 90% (with the SQL that found them) and the commands to try next. The same "
    "--seed gives the same runs; run ids carry a random tag, so repeated demos into one lake "
    "never collide.\n\n"
    "Examples:\n\n"
    "  xray-lake demo\n"
    "  xray-lake demo --runs 1000 --root /tmp/demo-lake\n"
    "  XRAY_LAKE_ROOT=/tmp/demo-lake xray-lake demo --seed 42"
)


@dataclass(frozen=True, slots=True)
class DiskUsage:
    """Published Parquet files under a local root (temp files excluded)."""

    files: int
    bytes: int
    per_table: dict[str, int]


def disk_usage(root: str) -> DiskUsage | None:
    """Files and bytes of each table under `root`; None for a remote root (not walked)."""
    from xray_lake.storage.layout import TABLES
    from xray_lake.storage.tempfiles import is_temp_file

    if "://" in root:
        return None
    files = size = 0
    per_table: dict[str, int] = {}
    for table in TABLES:
        n = 0
        for dirpath, _dirs, names in os.walk(os.path.join(root, table)):
            for name in names:
                if name.endswith(".parquet") and not is_temp_file(name):
                    n += 1
                    size += os.path.getsize(os.path.join(dirpath, name))
        per_table[table] = n
        files += n
    return DiskUsage(files, size, per_table)


def duckdb_command(root: str) -> str:
    """A copy-pasteable plain-DuckDB command for the headline question (no xray-lake needed)."""
    base = root if "://" in root else str(Path(root).resolve())
    glob = f"{base.rstrip('/')}/stages/*/*/*.parquet".replace("'", "''")
    sql = (
        "select run_id, name, n_in, n_out, fail_ratio "
        f"from read_parquet('{glob}', hive_partitioning=true, "
        "hive_types={'label':'VARCHAR','date':'VARCHAR'}) "
        "where type = 'filtering' and fail_ratio > 0.9 order by fail_ratio desc limit 10"
    )
    for ch in ("\\", '"', "$", "`"):
        sql = sql.replace(ch, "\\" + ch)
    return f'duckdb -c "{sql}"'


def _written(lake: Lake, summary: DemoSummary) -> dict[str, Any]:
    """Rows this demo wrote (its run ids share the batch tag) and what the whole lake holds."""
    pattern = f"__-{summary.run_prefix}-%"
    row = lake.sql(
        "select (select count(*) from runs where run_id like $p) as runs, "
        "(select count(*) from stages where run_id like $p) as stages, "
        "(select count(*) from candidates where run_id like $p) as candidates, "
        "(select count(*) from runs) as lake_runs",
        {"p": pattern},
    ).row(0, named=True)
    return row


def _example_candidate(lake: Lake, run_id: str, stage: str) -> str | None:
    """A candidate the stage dropped in that run, to make the `why` suggestion concrete."""
    found = lake.sql(
        "select candidate_id from candidates where run_id = ? and stage_name = ? "
        "and passed = false order by in_position limit 1",
        [run_id, stage],
    )
    return None if found.is_empty() else str(found.item(0, 0))


def demo(
    runs: Annotated[int, typer.Option("--runs", min=1, metavar="N",
                                      help="How many runs to record.")] = 200,
    root: RootOption = None,
    storage_option: StorageOption = None,
    seed: Annotated[int, typer.Option("--seed", metavar="N",
                                      help="Seed: the same seed gives the same runs.")] = 7,
) -> None:
    from rich.markup import escape
    from rich.syntax import Syntax
    from rich.table import Table

    import xray_lake as xr
    from xray_lake.demo.fashion_search import run_demo

    lake_root = resolve_root(root, storage_option)
    if "://" not in lake_root:
        os.makedirs(lake_root, exist_ok=True)  # fail fast, as one line, on a bad local root
    with progress_bar("recording runs", total=runs) as advance:
        def recorded(done: int) -> None:
            advance(done, description="writing Parquet" if done == runs else "recording runs")

        summary = run_demo(runs, root=lake_root, seed=seed, progress=recorded)
    if not summary.flushed:
        counters = xr.stats()
        stderr().print(f"xray-lake: error: the demo's records did not all reach the lake at "
                       f"{lake_root} (write failures: {counters.get('write_failures', '?')}, "
                       f"dropped: {counters.get('dropped_total', '?')}, still buffered: "
                       f"{counters.get('buffered_records', '?')})", markup=False,
                       soft_wrap=True)
        raise typer.Exit(1)

    out = stdout()
    with xr.Lake(lake_root) as lake:
        written = _written(lake, summary)
        hits = lake.sql(HEADLINE_SQL)
        n_hits = int(lake.sql(HEADLINE_COUNT_SQL).item(0, 0))
        example = _example_candidate(lake, hits["run_id"][0], hits["stage"][0]) \
            if not hits.is_empty() else None

    shown_root = lake_root if "://" in lake_root else str(Path(lake_root).resolve())
    labels = ", ".join(f"{n} {label}" for label, n in sorted(summary.by_label.items()))
    out.print(f"[bold]Recorded {summary.runs} runs[/] ({labels}; {summary.failures} failed "
              f"with CatalogTimeout) in {summary.seconds:.1f}s", soft_wrap=True)
    out.print(f"  lake: [cyan]{escape(shown_root)}[/]", soft_wrap=True)
    out.print(f"  written: {written['runs']} runs, {written['stages']} stages, "
              f"{written['candidates']:,} candidate rows")
    usage = disk_usage(lake_root)
    if usage is not None:
        tables = ", ".join(f"{t} {n}" for t, n in usage.per_table.items())
        out.print(f"  on disk: {usage.files} Parquet files ({tables}), "
                  f"{human_bytes(usage.bytes)}")

    out.print()
    out.print("[bold]Runs where a filtering stage eliminated more than 90% of candidates:[/] "
              f"{n_hits} of {written['lake_runs']} runs in the lake", soft_wrap=True)
    if hits.is_empty():
        out.print("  (none yet: record more runs, e.g. --runs 200)")
    else:
        table = Table(show_edge=False, pad_edge=False)
        for name in hits.columns:
            numeric = name in {"n_in", "n_out", "fail_ratio"}
            table.add_column(name, justify="right" if numeric else "left",
                             no_wrap=not numeric)
        for r in hits.iter_rows():
            table.add_row(*(escape(str(v)) for v in r))
        out.print(table)
        if n_hits > hits.height:
            out.print(f"  (top {hits.height} by fail_ratio; {n_hits} runs in all)")
    out.print()
    out.print("[bold]SQL[/] (xray-lake query, or xr.Lake().sql(...)):")
    out.print(Syntax(HEADLINE_SQL, "sql", theme="ansi_dark", background_color="default",
                     word_wrap=True))

    flag = root_flag(lake_root)
    run_id = str(hits["run_id"][0]) if not hits.is_empty() else summary.run_ids[0]
    lines = [
        (f"xray-lake show {run_id}{flag}", "the run's funnel, stage by stage"),
        (f"xray-lake why {run_id} {example or 'CANDIDATE_ID'}{flag}",
         "where and why one candidate was dropped"),
        (f'xray-lake query "select label, name, avg(fail_ratio) from stages '
         f"where type = 'filtering' group by all\"{flag}", "any SQL over runs/stages/candidates"),
    ]
    out.print()
    out.print("[bold]Next:[/]")
    for command, what in lines:
        out.print(f"  {escape(command)}", soft_wrap=True)
        out.print(f"      [dim]{what}[/]")
    out.print("  [dim]plain DuckDB, no xray-lake needed:[/]")
    out.print(f"  {escape(duckdb_command(lake_root))}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add `demo` to the app."""
    app.command("demo", help=HELP, cls=Command,
                no_args_is_help=False)(demo)
