"""One candidate's journey through a run, and a run's stage-by-stage funnel."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import polars as pl

# Positions in the lake are 0-based; verdicts speak 1-based ("ranked 1st").
STEP_COLUMNS: dict[str, pl.DataType] = {
    "seq": pl.Int32(),
    "stage": pl.String(),
    "type": pl.String(),
    "in_position": pl.Int32(),
    "out_position": pl.Int32(),
    "passed": pl.Boolean(),
    "reason_label": pl.String(),
    "reason_text": pl.String(),
    "score": pl.Float64(),
}
FUNNEL_COLUMNS: dict[str, pl.DataType] = {
    "seq": pl.Int32(),
    "name": pl.String(),
    "type": pl.String(),
    "status": pl.String(),
    "n_in": pl.Int64(),
    "n_out": pl.Int64(),
    "fail_ratio": pl.Float64(),
    "top_reasons": pl.String(),
    "duration_ms": pl.Float64(),
}
TOP_REASONS = 3


class SqlLake(Protocol):
    """What these functions need of `xr.Lake` (kept structural so tests can pass a stand-in)."""

    def sql(self, sql: str, params: Any = None) -> pl.DataFrame: ...


@dataclass(frozen=True, slots=True)
class RunInfo:
    """The `runs` row of one run (None fields when the run has stage rows but no run row)."""

    run_id: str
    label: str
    date: str
    status: str | None = None
    started_at: datetime | None = None
    duration_ms: float | None = None
    error_code: str | None = None
    error_message: str | None = None
    n_stages: int | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Journey:
    """Where one candidate went in one run: `steps` (one row per stage, seq order) and a verdict."""

    run_id: str
    candidate_id: str
    steps: pl.DataFrame
    verdict: str

    def __str__(self) -> str:
        return self.verdict


def find_runs(lake: SqlLake, run_id: str) -> list[RunInfo]:
    """The run's row(s), oldest first; falls back to its stage rows when the run row is missing.

    Usually one row. The label/date of each lets the stage and candidate scans read only
    that partition. Stage rows without a run row happen when a process died mid-run.
    """
    rows = lake.sql(
        "select run_id, label, date, status, started_at, duration_ms, error_code, "
        "error_message, n_stages from runs where run_id = ? order by started_at",
        [run_id],
    )
    if rows.height:
        return [RunInfo(**row) for row in rows.iter_rows(named=True)]
    orphans = lake.sql(
        "select distinct label, date from stages where run_id = ? order by date, label",
        [run_id],
    )
    return [RunInfo(run_id, label, date) for label, date in orphans.iter_rows()]


def _scope(runs: list[RunInfo]) -> tuple[str, list[str]]:
    """`(label = ? and date = ?) or ...` over the run's partitions, so DuckDB prunes the rest."""
    pairs = sorted({(r.label, r.date) for r in runs})
    clause = " or ".join("(label = ? and date = ?)" for _ in pairs)
    return f"({clause})", [value for pair in pairs for value in pair]


def _stages(lake: SqlLake, run_id: str, runs: list[RunInfo]) -> pl.DataFrame:
    scope, params = _scope(runs)
    return lake.sql(
        "select stage_id, seq, name, type, status, n_in, n_out, fail_ratio, reason_counts, "
        "duration_ms, error_code, sampled from stages "
        f"where run_id = ? and {scope} order by seq, started_at",
        [run_id, *params],
    )


def funnel(lake: SqlLake, run_id: str, *, runs: list[RunInfo] | None = None) -> pl.DataFrame:
    """Per stage of the run, in seq order: n_in -> n_out, fail ratio, top reasons, duration.

    `top_reasons` reads like `price_too_high 412, out_of_stock 37` (the 3 biggest counts).
    An unknown run gives an empty frame with the same columns. `runs`: the run's
    `find_runs` result when the caller already has it (saves a scan of `runs`).
    """
    runs = find_runs(lake, run_id) if runs is None else runs
    if not runs:
        return pl.DataFrame(schema=FUNNEL_COLUMNS)
    stages = _stages(lake, run_id, runs)
    top = [_top_reasons(counts) for counts in stages["reason_counts"].to_list()]
    return stages.with_columns(pl.Series("top_reasons", top, dtype=pl.String())).select(
        [pl.col(name).cast(dtype) for name, dtype in FUNNEL_COLUMNS.items()]
    )


def _top_reasons(counts: Any, k: int = TOP_REASONS) -> str | None:
    """`reason_counts` as its k biggest entries (a dict, or key/value structs in older polars)."""
    if not counts:
        return None
    items = counts.items() if isinstance(counts, dict) else ((e["key"], e["value"]) for e in counts)
    pairs = [(str(key), int(value or 0)) for key, value in items]
    pairs.sort(key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{reason} {n}" for reason, n in pairs[:k])


def journey(lake: SqlLake, run_id: str, candidate_id: str, *,
            runs: list[RunInfo] | None = None) -> Journey:
    """One candidate's path through a run: a row per stage it entered, and where it ended up.

    The verdict is one line: `dropped at price-filter: price_too_high (price 129.00 above
    max 100)`, `ranked 3rd of 30 at rerank`, `cut at rerank: entered 16th of 223, not among
    the 48 it returned (score 0.41 at relevance, cutoff 0.57)`, `never retrieved in run
    r-17`, or `no run r-17 in the lake`. `runs`: as for `funnel`.
    """
    candidate_id = str(candidate_id)
    runs = find_runs(lake, run_id) if runs is None else runs
    empty = pl.DataFrame(schema=STEP_COLUMNS)
    if not runs:
        return Journey(run_id, candidate_id, empty, f"no run {run_id} in the lake")
    stages = _stages(lake, run_id, runs)
    scope, params = _scope(runs)
    rows = lake.sql(
        "select stage_id, in_position, out_position, passed, reason_label, reason_text, score, "
        "stage_name, stage_type from candidates "
        f"where run_id = ? and candidate_id = ? and {scope}",
        [run_id, candidate_id, *params],
    )
    joined = (
        rows.join(stages.select("stage_id", "seq", "name", "type"), on="stage_id", how="left")
        .with_columns(stage=pl.coalesce("name", "stage_name"),
                      type=pl.coalesce("type", "stage_type"))
        .sort(["seq", "in_position"], nulls_last=True)
    )
    steps = joined.select([pl.col(name).cast(dtype) for name, dtype in STEP_COLUMNS.items()])
    verdict = _verdict(run_id, runs[0], stages, steps, _cut_scores(lake, run_id, runs, joined))
    return Journey(run_id, candidate_id, steps, verdict)


def _cut_scores(lake: SqlLake, run_id: str, runs: list[RunInfo],
                joined: pl.DataFrame) -> str | None:
    """`score 0.2 at relevance, cutoff 0.5` for a candidate a stage cut (neither passed nor
    failed it, and left it out): its latest score, and the score of the last candidate the
    stage kept, read from the same stage. None when there is no cut or no score."""
    if joined.is_empty():
        return None
    last = joined.row(joined.height - 1, named=True)
    if last["passed"] is False or last["out_position"] is not None:
        return None
    scored = joined.filter(pl.col("score").is_not_null())
    if scored.is_empty():
        return None
    source = scored.row(scored.height - 1, named=True)
    scope, params = _scope(runs)
    cutoff = lake.sql(
        f"select score from candidates where run_id = ? and stage_id = ? and {scope} "
        "and candidate_id = (select candidate_id from candidates where run_id = ? "
        f"and stage_id = ? and {scope} and out_position is not null "
        "order by out_position desc limit 1)",
        [run_id, source["stage_id"], *params, run_id, last["stage_id"], *params],
    )
    if cutoff.is_empty() or cutoff.item(0, 0) is None:
        return None
    at = "" if source["stage_id"] == last["stage_id"] else f" at {source['stage']}"
    return f"score {source['score']:.4g}{at}, cutoff {cutoff.item(0, 0):.4g}"


def ordinal(n: int) -> str:
    """1 -> '1st', 2 -> '2nd', 11 -> '11th', 23 -> '23rd'."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _failure(run: RunInfo, stages: pl.DataFrame, after_seq: int | None = None) -> str | None:
    """`the run failed at catalog-query: CatalogTimeout` or None when nothing failed there."""
    failed = stages.filter(pl.col("status") == "failure")
    if after_seq is not None:
        failed = failed.filter(pl.col("seq") > after_seq)
    if failed.height:
        row = failed.row(0, named=True)
        code = f": {row['error_code']}" if row["error_code"] else ""
        return f"the run failed at {row['name']}{code}"
    if after_seq is None and run.status == "failure":
        return f"the run failed: {run.error_code or run.error_message or 'no error recorded'}"
    return None


def _of(n: int | None) -> str:
    return "" if n is None else f" of {n}"


def _verdict(run_id: str, run: RunInfo, stages: pl.DataFrame, steps: pl.DataFrame,
             cut_scores: str | None = None) -> str:
    if steps.is_empty():
        why = _failure(run, stages)
        if why is None and stages.filter(pl.col("sampled").fill_null(False)).height:
            why = "or not stored: some of its stages keep only a sample of their candidates"
        return f"never retrieved in run {run_id}" + (f" ({why})" if why else "")
    last = steps.row(steps.height - 1, named=True)
    info = stages.filter(pl.col("seq") == last["seq"])
    stage = info.row(0, named=True) if info.height else {}
    name = last["stage"]
    n_in, n_out = stage.get("n_in"), stage.get("n_out")
    if last["passed"] is False:
        label, text = last["reason_label"], last["reason_text"]
        if label and text:
            return f"dropped at {name}: {label} ({text})"
        return f"dropped at {name}: {label or text or 'no reason recorded'}"
    if last["out_position"] is None:
        if stage.get("status") == "failure":
            code = f" ({stage['error_code']})" if stage.get("error_code") else ""
            return f"lost at {name}: the stage failed{code}"
        entered = "entered"
        if last["in_position"] is not None:
            entered += f" {ordinal(last['in_position'] + 1)}" + _of(n_in)
        kept = f"the {n_out} it returned" if n_out is not None else "what it returned"
        scores = f" ({cut_scores})" if cut_scores else ""
        return f"cut at {name}: {entered}, not among {kept}{scores}"
    place = ordinal(last["out_position"] + 1) + _of(n_out)
    later = stages.filter(pl.col("seq") > last["seq"], pl.col("n_in").is_not_null())
    if later.height:
        failed = _failure(run, stages, after_seq=last["seq"])
        if failed:
            return f"reached {name} ({place}); then {failed}"
        return f"left after {name} ({place}): not in the input of {later['name'][0]}"
    if last["type"] == "ranking":
        return f"ranked {place} at {name}"
    if last["type"] == "scoring" and last["score"] is not None:
        return f"scored {last['score']:.4g} at {name}, the last stage ({place})"
    return f"came out of {name}, the last stage ({place})"


__all__ = ["FUNNEL_COLUMNS", "STEP_COLUMNS", "Journey", "RunInfo", "find_runs", "funnel",
           "journey", "ordinal"]
