"""Turns events into table rows on the writer's thread: one `stages` row and its candidate rows.

The pipeline of a stage, each step in its own module: read its candidate lists
(records/unpack.py `view`), pair outputs with inputs (records/matching.py), fill the candidate
columns per stage type (below), measure (records/metrics.py, then plugins), cap and count the
cuts (records/cuts.py), sample, and hand the kept rows over as `PendingRows`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from xray_lake.config import Settings
from xray_lake.records import metrics as m
from xray_lake.records import plugin_registry as registry
from xray_lake.records.candidates import StageCandidates, column, plugin_table, to_pending
from xray_lake.records.cuts import Cuts
from xray_lake.records.encode import to_json
from xray_lake.records.events import RunEvent, StageEvent
from xray_lake.records.matching import (
    id_strings,
    match_by_identity,
    match_in_order,
    match_rest_by_id,
    survivors_by_identity,
)
from xray_lake.records.options import CapsInForce
from xray_lake.records.pending import PendingRows, text_or_none
from xray_lake.records.unpack import HelperFields, StageView, view

Row = dict[str, Any]


def timestamp(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def _json(value: object, cap: int) -> tuple[str | None, int]:
    if value is None:
        return None, 0
    text, cut = to_json(value, cap)
    return text, int(cut)


def build_run(ev: RunEvent, settings: Settings, host: str, pid: int, version: str) -> Row:
    """One row of `runs`."""
    cap = settings.raw_cap_bytes
    attributes, _ = _json(ev.attributes or None, cap)
    input_json, _ = _json(ev.input, cap)
    output_json, _ = _json(ev.output, cap)
    return {
        "run_id": ev.run_id,
        "started_at": timestamp(ev.started_at),
        "finished_at": timestamp(ev.finished_at),
        "duration_ms": ev.duration_ms,
        "status": "incomplete" if ev.n_stages_shed else ev.status,
        "error_message": ev.error_message if not ev.n_stages_shed else _shed_message(ev),
        "error_code": ev.error_code,
        "n_stages": ev.n_stages,
        "attributes": attributes,
        "input_json": input_json,
        "output_json": output_json,
        "sdk_version": version,
        "host": host,
        "pid": pid,
        "n_stages_shed": ev.n_stages_shed,
        "n_candidates_shed": ev.n_candidates_shed,
    }


def _shed_message(ev: RunEvent) -> str:
    shed = (f"xray-lake shed {ev.n_stages_shed} of {ev.n_stages} stage records "
            f"({ev.n_candidates_shed} candidate rows) of this run; see xr.stats()['dropped']")
    return shed if ev.error_message is None else f"{ev.error_message} ({shed})"


class StageRows:
    """What one stage event becomes: its `stages` row and the candidate rows it stores."""

    __slots__ = ("candidate_rows", "cuts", "n_truncated", "row")

    def __init__(self, row: Row, candidate_rows: PendingRows | None, n_truncated: int,
                 cuts: Cuts | None = None) -> None:
        self.row = row
        self.candidate_rows = candidate_rows  # None: the stage stores no candidate row
        self.n_truncated = n_truncated
        self.cuts = cuts or Cuts()  # what was cut, per field: for the once-per-stage warning


def build_stage(ev: StageEvent, settings: Settings) -> StageRows:
    """One `stages` row and the stage's `candidates` rows; metrics on the full lists, rows
    sampled afterwards (when the stage asks for it)."""
    spec = ev.spec
    caps = CapsInForce(settings, spec.caps)
    input_json, cut_in = _json(ev.inputs.raw or None, caps.raw)
    output_json, cut_out = _json(ev.outputs.raw, caps.raw)
    row: Row = {
        "run_id": ev.run_id,
        "stage_id": ev.stage_id,
        "name": spec.name,
        "type": spec.recorded_type,
        "seq": ev.seq,
        "parent_stage_id": ev.parent_stage_id,
        "started_at": timestamp(ev.started_at),
        "finished_at": timestamp(ev.finished_at),
        "duration_ms": ev.duration_ms,
        "status": ev.status,
        "error_message": ev.error_message,
        "error_code": ev.error_code,
        "input_json": input_json,
        "output_json": output_json,
        "n_in": None,
        "n_out": None,
        "reason_counts": None,
        "metrics": None,
        "sampled": False,
        "sample_rate": 1.0,
        "n_candidates_stored": 0,
        "n_truncated": 0,
        "validation_error": ev.validation_error,
    }
    problems: list[str] = [ev.validation_error] if ev.validation_error else []
    cuts = Cuts()
    cuts.add("input_json", cut_in, caps.raw)
    cuts.add("output_json", cut_out, caps.raw)
    cands: StageCandidates | None = None
    if spec.type != "raw":
        lists = view(ev, bool(spec.fields.promoted) or registry.reads_items(spec))
        if lists.out_items is not None or lists.in_items is not None:
            cands = StageCandidates()
            stage = _Stage(ev, lists, settings, row, cands, problems)
            _BUILDERS[spec.type](stage)
    registry.measure(spec, row, problems, plugin_table(cands))  # after the built-in metrics
    stored: PendingRows | None = None
    if cands is not None and cands.payload:
        missing = sum(1 for x in cands.ids if x is None)
        n_before = len(cands.payload)
        problems.extend(cands.finish(caps, spec.fields.promoted, cuts))  # before sampling
        if spec.sample is not None:
            keep = spec.sample.keep(cands.ids, cands.passed, cands.out_pos, cands.score,
                                    spec.type, ev.run_id)
            if keep is not None:
                cands = cands.take(keep)
        if cands.payload:
            stored = to_pending(cands, ev.run_id, (ev.stage_id, spec.name, spec.recorded_type))
        n_stored = stored.num_rows if stored is not None else 0
        row["n_candidates_stored"] = n_stored
        if n_stored < n_before:
            row["sampled"] = True
            row["sample_rate"] = n_stored / n_before
        if missing and spec.fields.id is not None:
            problems.append(
                f"{missing} of {n_before} candidates have no id under {spec.fields.id!r}"
            )
    n_truncated = cuts.total
    row["n_truncated"] = n_truncated
    row["validation_error"] = "; ".join(problems) or None
    return StageRows(row, stored, n_truncated, cuts)


# --- per stage type ---------------------------------------------------------------------


class _Stage:
    """One stage being built: the event, its lists read, and what the builders fill."""

    __slots__ = ("cands", "ev", "in_ids", "lists", "problems", "row", "settings")

    def __init__(self, ev: StageEvent, lists: StageView, settings: Settings, row: Row,
                 cands: StageCandidates, problems: list[str]) -> None:
        self.ev = ev
        self.lists = lists
        self.settings = settings
        self.row = row
        self.cands = cands
        self.problems = problems
        self.in_ids = _input_ids(ev, lists)


def _input_ids(ev: StageEvent, lists: StageView) -> list[str | None] | None:
    """The input candidates' ids: read on the caller's thread when it could, else now."""
    keys, refs = ev.inputs.keys, ev.inputs.refs
    if keys is not None and refs is not None and len(keys) == len(refs):
        return id_strings(keys)
    if lists.in_items is None:
        return None
    return id_strings(column(lists.in_items, ev.spec.fields.id))


def _output_rows(
    b: _Stage,
) -> tuple[list[object], HelperFields | None, list[str | None], list[int | None], set[int]]:
    """Output candidates, their helpers' fields (None without helpers), ids, input positions
    (matched by id, then by identity for those without one) and the inputs matched."""
    payload = b.lists.out_items or []
    outs = b.ev.outputs
    if outs.keys is not None and len(outs.keys) == len(payload):
        ids = id_strings(outs.keys)
    else:
        ids = id_strings(column(payload, b.ev.spec.fields.id))
    in_pos: list[int | None] = [None] * len(ids)
    matched: set[int] = set()
    if b.in_ids is not None:
        in_pos = match_in_order(ids, b.in_ids)
        refs = b.ev.inputs.refs
        if None in ids and outs.objs is not None and refs is not None \
                and len(outs.objs) == len(ids):
            in_pos = match_by_identity(ids, in_pos, outs.objs, refs)
        matched = {p for p in in_pos if p is not None}
    return payload, b.lists.helper_fields, ids, in_pos, matched


def _append_unmatched_inputs(b: _Stage, matched: set[int]) -> None:
    """Input candidates the stage did not return: rows with no out_position."""
    in_ids, source = b.in_ids, b.lists.in_items
    assert in_ids is not None and source is not None
    missing = [i for i in range(len(in_ids)) if i not in matched]
    if missing:
        b.cands.extend(
            [source[i] for i in missing],
            [in_ids[i] for i in missing],
            missing,
            [None] * len(missing),
            passed=[False] * len(missing) if b.ev.spec.type == "filtering" else None,
            texts=b.lists.input_texts(missing),
        )


def _produced(b: _Stage) -> None:
    """Retrieval and generation: the returned list is the stage's own; a generation stage
    also records why each candidate was generated, a retrieval stage its score (score=)."""
    ev, row = b.ev, b.row
    payload, helpers, ids, in_pos, _ = _output_rows(b)
    reasons: list[object] | None = None
    scores: list[object] | None = None
    if ev.spec.type == "generation":
        reasons = helpers["reason"] if helpers is not None \
            else column(payload, ev.spec.fields.reason)
    elif ev.spec.fields.score is not None:  # a retriever that scores (BM25, similarity)
        scores = column(payload, ev.spec.fields.score)
    b.cands.extend(payload, ids, in_pos, list(range(len(payload))), reason=reasons,
                   score=scores, texts=b.lists.out_texts)
    row["n_in"] = len(ev.inputs.refs) if ev.inputs.refs is not None else None
    row["n_out"] = len(payload)
    row.update(m.retrieval_metrics(ids) if reasons is None
               else m.generation_metrics(len(payload), text_or_none(reasons)))
    if scores is not None:
        row.update(m.scoring_metrics(scores))


def _scored(b: _Stage) -> None:
    """Scoring and ranking: returned candidates with their score, then the inputs left out.
    A scoring stage must say where its score is; a ranking stage is measured by its order."""
    ev, row = b.ev, b.row
    ranking = ev.spec.type == "ranking"
    payload, helpers, ids, in_pos, matched = _output_rows(b)
    scores: list[object] | None = None
    if helpers is not None:
        scores = helpers["score"]
    elif ev.spec.fields.score is not None:
        scores = column(payload, ev.spec.fields.score)
    elif not ranking:
        scores = [None] * len(payload)
        b.problems.append("no score: map one with score='field' or return xr.Scored(item, score)")
    b.cands.extend(payload, ids, in_pos, list(range(len(payload))), score=scores,
                   texts=b.lists.out_texts)
    if b.in_ids is not None:
        _append_unmatched_inputs(b, matched)
    if not ranking:
        row.update(m.scoring_metrics(cast("list[object]", scores)))
    elif b.in_ids is not None:
        row.update(m.ranking_metrics(b.in_ids, ids, b.settings.topk))
    row["n_in"] = len(b.in_ids) if b.in_ids is not None else None
    row["n_out"] = len(payload)


def _filtering(b: _Stage) -> None:
    ev, row, c = b.ev, b.row, b.cands
    f = ev.spec.fields
    if b.lists.out_items is not None:  # every candidate came back with a verdict
        payload, helpers, ids, in_pos, matched = _output_rows(b)
        if helpers is not None:
            passed = helpers["passed"]
            labels = helpers["reason_label"]
            texts = helpers["reason_text"]
        else:
            passed = column(payload, f.passed)
            labels = column(payload, f.reason_label)
            texts = column(payload, f.reason_text)
        unknown = sum(1 for p in passed if p is None)
        if unknown:
            b.problems.append(
                f"{unknown} of {len(passed)} returned candidates have no pass flag under "
                f"{f.passed!r}; counted as passed"
            )
            passed = [True if p is None else p for p in passed]
        out_pos: list[int | None] = []
        k = 0
        for p in passed:
            out_pos.append(k if p else None)
            k += bool(p)
        c.extend(payload, ids, in_pos, out_pos, passed=passed, reason_label=labels,
                 reason_text=texts, texts=b.lists.out_texts)
        if b.in_ids is not None:
            _append_unmatched_inputs(b, matched)
    elif ev.outputs.refs is not None:  # survivors only: failed = inputs missing from the output
        _filter_survivors(b)
    else:  # the stage raised or returned no list: its inputs are known, no verdict is
        source = b.lists.in_items or []
        c.extend(source, b.in_ids or [], list(range(len(source))), [None] * len(source),
                 texts=b.lists.input_texts())
        row["n_in"] = len(source)
        return
    n_in = len(ev.inputs.refs) if ev.inputs.refs is not None else len(c.payload)
    row["n_in"] = n_in
    verdicts = cast("list[bool | None]", c.passed)  # read by truthiness
    # over every candidate row: inputs, plus any the stage returned that it was not given
    row.update(m.filtering_metrics(len(verdicts), verdicts, text_or_none(c.reason_label)))
    row["n_out"] = row["n_passed"]


def _filter_survivors(b: _Stage) -> None:
    f = b.ev.spec.fields
    snap = b.lists.in_items or []
    refs = b.ev.inputs.refs or snap
    out = b.ev.outputs.refs or []
    in_ids = b.in_ids or id_strings(column(snap, f.id))
    out_pos = survivors_by_identity(refs, out)
    out_ids: list[str | None] = []
    if len({j for j in out_pos if j is not None}) < len(out):  # some are new objects: by id
        out_ids = id_strings(column(out, f.id))
        out_pos = match_rest_by_id(out_pos, in_ids, out_ids)
    matched_out = {j for j in out_pos if j is not None}
    b.cands.extend(snap, in_ids, list(range(len(snap))), out_pos,
                   passed=[j is not None for j in out_pos],
                   reason_label=column(snap, f.reason_label),
                   reason_text=column(snap, f.reason_text), texts=b.lists.input_texts())
    extra = [j for j in range(len(out)) if j not in matched_out]
    if extra:  # returned candidates that were not in the input
        b.cands.extend([out[j] for j in extra], [out_ids[j] for j in extra],
                       [None] * len(extra), extra, passed=[True] * len(extra))


_BUILDERS: dict[str, Callable[[_Stage], None]] = {
    "retrieval": _produced,
    "generation": _produced,
    "scoring": _scored,
    "ranking": _scored,
    "filtering": _filtering,
}
