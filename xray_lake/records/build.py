"""Turns events into table rows on the writer's thread: field extraction, metrics, JSON encoding."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Sequence
from datetime import UTC, datetime
from itertools import compress, repeat
from operator import methodcaller
from typing import Any, cast

import pyarrow as pa

from xray_lake.config import Settings
from xray_lake.records import metrics as m
from xray_lake.records import plugins
from xray_lake.records.encode import cap_text, encode_many, to_json
from xray_lake.records.events import RunEvent, StageEvent
from xray_lake.records.options import Caps
from xray_lake.records.packed import HELPER_FIELDS
from xray_lake.records.pending import PendingRows, only_text, scores, text_or_none, verdicts
from xray_lake.records.promoted import Promoted
from xray_lake.records.promoted_columns import Extracted, extract
from xray_lake.records.results import HELPER_OF, RESULT_HELPERS, Filtered, Generated, Scored
from xray_lake.records.unpack import cap_texts, unpack, unpack_fields
from xray_lake.records.values import read_field

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


# --- field extraction -------------------------------------------------------------------


def column(items: Sequence[object], name: str | None) -> list[object]:
    """The values of field `name` across `items` (None where absent)."""
    if name is None:
        return [None] * len(items)
    if set(map(type, items)) <= {dict}:
        return list(map(methodcaller("get", name), items))
    return list(map(read_field, items, repeat(name)))


def _unwrap(items: Sequence[object], helper: type) -> tuple[list[object], list[object] | None]:
    """Splits typed result helpers into (candidates, helpers); helpers is None when unused."""
    if not items or not any(isinstance(x, helper) for x in items[:1]):
        return list(items), None
    payloads = [x.item if isinstance(x, helper) else x for x in items]  # type: ignore[attr-defined]
    return payloads, [x if isinstance(x, helper) else None for x in items]


def _helper_field(helpers: list[object], attr: str) -> list[object]:
    return [getattr(h, attr) if h is not None else None for h in helpers]


def _id_strings(ids: Sequence[object]) -> list[str | None]:
    if only_text(ids):
        return cast("list[str | None]", list(ids))
    return [x if type(x) is str else (None if x is None else str(x)) for x in ids]


def _first_index(keys: Sequence[Hashable | None]) -> dict[Hashable, int]:
    """Each key's first position (None is no key); built from the end in C, so the first wins."""
    n = len(keys)
    index: dict[Hashable, int] = dict(zip(reversed(keys), range(n - 1, -1, -1), strict=True))
    index.pop(None, None)
    return index


def _match_in_order(keys: Sequence[str | None], targets: Sequence[str | None]) -> list[int | None]:
    """For each key, the position of its next unused occurrence in `targets` (None if none is left).

    One-to-one: with duplicate ids the k-th copy of an id in `keys` is matched to its k-th copy
    in `targets`, so no target position is claimed twice.
    """
    index = _first_index(targets)
    pos: list[int | None] = list(map(index.get, keys))  # a None key finds nothing
    claimed = [p for p in pos if p is not None]
    if len(set(claimed)) == len(claimed):  # no id repeats among the matches: already in order
        return pos
    free: dict[str, deque[int]] = {}
    for i, key in enumerate(targets):
        if key is not None:
            free.setdefault(key, deque()).append(i)
    result: list[int | None] = []
    for key in keys:
        queue = free.get(key) if key is not None else None
        result.append(queue.popleft() if queue else None)
    return result


class _Candidates:
    """Column lists of one stage's candidate rows, filled per stage type.

    `finish()` then completes them before sampling, so caps and promoted fields are counted
    over every candidate: one capped JSON text per row (`texts`), capped reasons, and the
    promoted columns.
    """

    def __init__(self) -> None:
        self.ids: list[str | None] = []
        self.in_pos: list[int | None] = []
        self.out_pos: list[int | None] = []
        self.passed: list[object] = []
        self.reason_label: list[object] = []
        self.reason_text: list[object] = []
        self.score: list[object] = []
        self.reason: list[object] = []
        self.payload: list[object] = []
        # (start, end, JSON texts already made by unpack() or None) per extend() call; a text
        # may be null (not frozen as JSON): finish() encodes those
        self.segments: list[tuple[int, int, pa.Array | None]] = []
        self.texts: pa.Array | None = None  # set by finish(): one capped JSON text per row
        self.promoted: Extracted | None = None

    def extend(
        self,
        payload: Sequence[object],
        ids: Sequence[str | None],
        in_pos: Sequence[int | None],
        out_pos: Sequence[int | None],
        *,
        passed: Sequence[object] | None = None,
        reason_label: Sequence[object] | None = None,
        reason_text: Sequence[object] | None = None,
        score: Sequence[object] | None = None,
        reason: Sequence[object] | None = None,
        texts: pa.Array | None = None,
    ) -> None:
        n = len(payload)
        start = len(self.payload)
        self.segments.append((start, start + n, texts if texts is not None and len(texts) == n
                              else None))
        self.payload.extend(payload)
        self.ids.extend(ids)
        self.in_pos.extend(in_pos)
        self.out_pos.extend(out_pos)
        for target, values in (
            (self.passed, passed),
            (self.reason_label, reason_label),
            (self.reason_text, reason_text),
            (self.score, score),
            (self.reason, reason),
        ):
            target.extend(values if values is not None else [None] * n)

    def finish(self, caps: _Caps, promoted: Sequence[Promoted], cuts: Cuts) -> list[str]:
        """Payload texts, reasons and promoted columns of every row, capped; what was cut is
        added to `cuts`. Returns problems for the stage's validation_error."""
        parts = [_complete(texts, self.payload[start:end]) for start, end, texts in self.segments]
        texts = parts[0] if len(parts) == 1 else pa.concat_arrays(parts)
        self.texts, n_cut = cap_texts(texts, caps.payload)
        cuts.add("payload", n_cut, caps.payload)
        for name in ("reason_text", "reason"):
            values, n_cut = _cap_reasons(getattr(self, name), caps.reason)
            setattr(self, name, values)
            cuts.add(name, n_cut, caps.reason)
        problems: list[str] = []
        if promoted:
            self.promoted = extract(self.payload, promoted, caps.payload)
            cuts.add("promoted strings", self.promoted.n_cut, caps.payload)
            for column, (n_bad, kind) in self.promoted.misfits.items():
                cuts.add(column, n_bad, None, kind)
                problems.append(f"{n_bad} of {len(self.payload)} values of promoted field "
                                f"{column} do not fit {kind}; stored null")
        return problems

    def take(self, keep: Sequence[bool]) -> _Candidates:
        """The rows where `keep` is true, in order (finished texts and promoted columns too)."""
        out = _Candidates()
        for name in ("ids", "in_pos", "out_pos", "passed", "reason_label", "reason_text",
                     "score", "reason", "payload"):
            setattr(out, name, list(compress(getattr(self, name), keep)))
        mask = pa.array(keep, pa.bool_())
        if self.texts is not None:
            out.texts = self.texts.filter(mask)
            out.segments = [(0, len(out.payload), out.texts)]
        if self.promoted is not None:
            out.promoted = self.promoted.take(mask)
        return out


def _complete(texts: pa.Array | None, items: Sequence[object]) -> pa.Array:
    """The JSON text of every item: those unpack() made, the rest encoded now (uncapped)."""
    if texts is None:
        return encode_many(items)[0]
    if not texts.null_count:
        return texts
    values = texts.to_pylist()
    todo = [i for i, v in enumerate(values) if v is None]
    made = encode_many([items[i] for i in todo])[0].to_pylist()
    for i, text in zip(todo, made, strict=True):
        values[i] = text
    return pa.array(values, pa.large_string())


def _cap_reasons(values: list[object], cap: int) -> tuple[list[object], int]:
    """Reason texts as strings, those over `cap` characters cut and marked '…[+N chars]'."""
    if values.count(None) == len(values) or (
            only_text(values) and max(map(len, cast("list[str]", filter(None, values))), default=0) <= cap):
        return values, 0  # the common cases, checked in C
    n_cut = 0
    out: list[object] = []
    for text in values:
        if text is None or (type(text) is str and len(text) <= cap):
            out.append(text)
            continue
        capped, was_cut = cap_text(text if isinstance(text, str) else str(text), cap)
        n_cut += was_cut
        out.append(capped)
    return out, n_cut


class Cuts:
    """What the caps cut in one stage, per field: the count and the cap (for the warning)."""

    __slots__ = ("by_field",)

    def __init__(self) -> None:
        self.by_field: dict[str, tuple[int, int | None, str | None]] = {}

    def add(self, field: str, n: int, cap: int | None, kind: str | None = None) -> None:
        if n:
            count = self.by_field.get(field, (0, cap, kind))[0]
            self.by_field[field] = (count + n, cap, kind)

    @property
    def total(self) -> int:
        return sum(n for n, _, _ in self.by_field.values())

    def message(self, stage: str) -> str:
        """The once-per-stage-name warning: which stage, which fields, the caps, the fix."""
        over: list[str] = []
        unfit: list[str] = []
        knobs: list[tuple[str, str]] = []
        for field, (n, cap, kind) in self.by_field.items():
            if kind is not None:
                unfit.append(f"{n} value(s) of promoted field {field} do not fit {kind}")
                continue
            knob = _CAP_KNOBS.get(field, _CAP_KNOBS["payload"])
            unit = "chars" if knob[0] == "reason_chars" or field == "promoted strings" \
                else "bytes"
            over.append(f"{n} {field} value(s) over {cap} {unit}")
            if knob not in knobs:
                knobs.append(knob)
        said: list[str] = []
        if over:
            said.append(
                f"stage {stage!r} had values longer than the size caps: {', '.join(over)}. "
                'They are recorded cut, their head kept and marked ({"$truncated": <bytes>, '
                "\"$head\": ...} in JSON, '…[+N chars]' in text), and counted in "
                "stages.n_truncated. To keep more, raise the cap for this stage with "
                f"caps=xr.Caps({', '.join(k + '=...' for k, _ in knobs)}) or for every stage "
                f"with xr.configure({', '.join(g + '=...' for _, g in knobs)}).")
        if unfit:
            said.append(
                f"stage {stage!r}: {', '.join(unfit)}; they are stored null and counted in "
                "stages.n_truncated. Declare the type the values have (xr.Field(name, str)) "
                "or fix the values.")
        return "xray-lake: " + " ".join(said) + " Warned once per stage name."


# field -> (xr.Caps argument, global setting)
_CAP_KNOBS: dict[str, tuple[str, str]] = {
    "payload": ("payload_bytes", "payload_cap_bytes"),
    "promoted strings": ("payload_bytes", "payload_cap_bytes"),
    "input_json": ("raw_bytes", "raw_cap_bytes"),
    "output_json": ("raw_bytes", "raw_cap_bytes"),
    "reason_text": ("reason_chars", "reason_cap_chars"),
    "reason": ("reason_chars", "reason_cap_chars"),
}


class StageBuild:
    """The stage row and candidate rows of one stage event."""

    __slots__ = ("batch", "cuts", "n_truncated", "row")

    def __init__(self, row: Row, batch: PendingRows | None, n_truncated: int,
                 cuts: Cuts | None = None) -> None:
        self.row = row
        self.batch = batch
        self.n_truncated = n_truncated
        self.cuts = cuts or Cuts()  # what was cut, per field: for the once-per-stage warning


class _Caps:
    """The size caps in force for one stage: its own `Caps`, else the global settings."""

    __slots__ = ("payload", "raw", "reason")

    def __init__(self, settings: Settings, caps: Caps | None) -> None:
        self.payload = settings.payload_cap_bytes
        self.raw = settings.raw_cap_bytes
        self.reason = settings.reason_cap_chars
        if caps is not None:
            self.payload = caps.payload_bytes or self.payload
            self.raw = caps.raw_bytes or self.raw
            self.reason = caps.reason_chars or self.reason


def build_stage(ev: StageEvent, settings: Settings) -> StageBuild:
    """One `stages` row and the stage's `candidates` rows; metrics on the full lists, rows
    sampled afterwards (when the stage asks for it)."""
    spec = ev.spec
    caps = _Caps(settings, spec.caps)
    cap = caps.raw
    input_json, cut_in = _json(ev.raw_inputs or None, cap)
    output_json, cut_out = _json(ev.raw_output, cap)
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
    cuts.add("input_json", cut_in, cap)
    cuts.add("output_json", cut_out, cap)
    _thaw(ev)
    cands: _Candidates | None = None
    if spec.type != "raw" and (ev.out_snap is not None or ev.in_snap is not None
                               or ev.in_refs is not None):
        cands = _Candidates()
        _BUILDERS[spec.type](ev, settings, row, cands, problems)
    plugins.measure(spec, row, problems, _plugin_columns(cands))  # after the built-in metrics
    batch: PendingRows | None = None
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
            batch = _pending(ev, cands)
        n_stored = batch.num_rows if batch is not None else 0
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
    return StageBuild(row, batch, n_truncated, cuts)


def _pending(ev: StageEvent, c: _Candidates) -> PendingRows:
    """The stored rows, converted to Arrow later with the rest of their partition."""
    spec = ev.spec
    promoted = c.promoted.arrays if c.promoted else []
    return PendingRows(
        ev.run_id, (ev.stage_id, spec.name, spec.recorded_type), c.ids,
        c.in_pos, c.out_pos, c.passed, text_or_none(c.reason_label),
        text_or_none(c.reason_text), c.score, text_or_none(c.reason),
        c.texts if c.texts is not None else encode_many(c.payload)[0], promoted)


def _thaw(ev: StageEvent) -> None:
    """Unpack the blobs the caller packed into `*_snap` lists (+ their JSON texts, uncapped:
    `_Candidates.finish` caps every row's text once)."""
    # Parsing a blob costs more than packing it: skip it when the ids (captured on the
    # caller's thread) are all the writer needs from those items.
    f = ev.spec.fields
    reads_items = bool(f.promoted) or plugins.reads_items(ev.spec)
    ids_only = not (reads_items or f.passed or f.reason_label or f.reason_text or f.score
                    or f.reason)
    if ev.in_blob is not None:
        ev.in_texts, ev.in_snap, _ = unpack(
            ev.in_blob, None, len(ev.in_keys) if ev.in_keys is not None else None,
            decode=not (ids_only and ev.in_keys is not None))
    if ev.out_blob is not None:
        texts, items, _ = unpack(
            ev.out_blob, None, len(ev.out_keys) if ev.out_keys is not None else None,
            # helpers packed apart bring their own fields: the items' mapped ones are unused
            decode=ev.helpers or ev.out_keys is None
            or not (ids_only or (ev.out_fields is not None and not reads_items)))
        if ev.helpers:  # packed as dicts of their fields: rebuild them, re-encode `.item`
            ev.out_snap = [_rebuild_helper(x) for x in items]
        else:
            ev.out_texts, ev.out_snap = texts, items
        if ev.out_fields is not None:  # helpers packed apart: the items, and their fields
            ev.out_columns = unpack_fields(ev.out_fields, HELPER_OF[ev.spec.type])
    if ev.dropped_blob is not None and ev.dropped_idx is not None and ev.in_refs is not None:
        texts, dropped, _ = unpack(ev.dropped_blob, None)
        merged = [x.item if isinstance(x, RESULT_HELPERS) else x for x in ev.in_refs]
        slots: list[int | None] = [None] * len(merged)
        for j, (i, item) in enumerate(zip(ev.dropped_idx, dropped, strict=False)):
            merged[i] = item
            slots[i] = j
        ev.in_snap = merged
        # the dropped inputs' texts at their input positions; null where an input was kept
        ev.in_texts = texts.take(pa.array(slots, pa.int64()))


def _input_texts(ev: StageEvent, rows: list[int] | None = None) -> pa.Array | None:
    """The JSON texts unpack() made for the input candidates (all, or `rows`), when known."""
    texts = ev.in_texts
    if not isinstance(texts, pa.Array) or ev.in_snap is None or len(texts) != len(ev.in_snap):
        return None
    return texts if rows is None else texts.take(pa.array(rows, pa.int64()))


_HELPER_FIELDS = {frozenset(h.__dataclass_fields__): h for h in RESULT_HELPERS}


def _rebuild_helper(value: object) -> object:
    if isinstance(value, dict):
        helper = _HELPER_FIELDS.get(frozenset(value))
        if helper is not None:
            return helper(**value)
    return value


def _out_texts(ev: StageEvent) -> pa.Array | None:
    """The returned items' JSON texts, unless the helpers were packed whole (texts of the
    helpers then, not of their items)."""
    return None if ev.helpers else cast("pa.Array | None", ev.out_texts)


# --- per stage type ---------------------------------------------------------------------

Builder = Callable[[StageEvent, Settings, Row, _Candidates, list[str]], None]


def _input_items(ev: StageEvent) -> list[object] | None:
    """The input candidates, unwrapped from result helpers (a ranking stage may take the
    `xr.Scored` list a scoring stage returned)."""
    source = ev.in_snap if ev.in_snap is not None else ev.in_refs
    if source is None:
        return None
    if source and isinstance(source[0], RESULT_HELPERS):
        return [x.item if isinstance(x, RESULT_HELPERS) else x for x in source]
    return source


def _input_ids(ev: StageEvent) -> list[str | None] | None:
    if ev.in_keys is not None and ev.in_refs is not None and len(ev.in_keys) == len(ev.in_refs):
        return _id_strings(ev.in_keys)
    source = _input_items(ev)
    if source is None:
        return None
    return _id_strings(column(source, ev.spec.fields.id))


def _append_unmatched_inputs(
    ev: StageEvent, c: _Candidates, in_ids: list[str | None], matched: set[int]
) -> None:
    """Input candidates the stage did not return: rows with no out_position."""
    source = _input_items(ev)
    assert source is not None
    missing = [i for i in range(len(in_ids)) if i not in matched]
    if missing:
        c.extend(
            [source[i] for i in missing],
            [in_ids[i] for i in missing],
            missing,
            [None] * len(missing),
            passed=[False] * len(missing) if ev.spec.type == "filtering" else None,
            texts=_input_texts(ev, missing),
        )


Helpers = dict[str, list[object]]  # a result helper's fields, one list per field


def _output_rows(
    ev: StageEvent, helper: type
) -> tuple[list[object], Helpers | None, list[str | None], list[int | None], set[int]]:
    """Output candidates, their helpers' fields (None without helpers), ids and input
    positions (matched by id)."""
    items = ev.out_snap or []
    helpers: Helpers | None
    if ev.out_columns is not None:
        payload, helpers = items, ev.out_columns
    else:
        payload, objs = _unwrap(items, helper)
        helpers = None if objs is None else {
            name: _helper_field(objs, name) for name in HELPER_FIELDS[helper]}
    if ev.out_keys is not None and len(ev.out_keys) == len(payload):
        ids = _id_strings(ev.out_keys)
    else:
        ids = _id_strings(column(payload, ev.spec.fields.id))
    in_ids = _input_ids(ev)
    in_pos: list[int | None] = [None] * len(ids)
    matched: set[int] = set()
    if in_ids is not None:
        in_pos = _match_in_order(ids, in_ids)
        if None in ids:
            _match_by_identity(ev, ids, in_pos)
        matched = {p for p in in_pos if p is not None}
    return payload, helpers, ids, in_pos, matched


def _match_by_identity(ev: StageEvent, ids: list[str | None], in_pos: list[int | None]) -> None:
    """Outputs without an id: the input that is the very same object, if any (in place)."""
    outs, ins = ev.out_objs, ev.in_refs
    if outs is None or ins is None or len(outs) != len(ids):
        return
    claimed = {p for p in in_pos if p is not None}
    by_identity: dict[int, int] = {}
    for i, item in enumerate(ins):
        by_identity.setdefault(id(item.item if isinstance(item, RESULT_HELPERS) else item), i)
    for j, key in enumerate(ids):
        if key is None and in_pos[j] is None:
            out = outs[j]
            match = by_identity.get(id(out.item if isinstance(out, RESULT_HELPERS) else out))
            if match is not None and match not in claimed:
                in_pos[j] = match
                claimed.add(match)


def _retrieval(ev: StageEvent, s: Settings, row: Row, c: _Candidates, problems: list[str]) -> None:
    payload, _, ids, in_pos, _ = _output_rows(ev, Generated)
    c.extend(payload, ids, in_pos, list(range(len(payload))), texts=_out_texts(ev))
    row["n_in"] = len(ev.in_refs) if ev.in_refs is not None else None
    row["n_out"] = len(payload)
    row.update(m.retrieval_metrics(ids))


def _generation(ev: StageEvent, s: Settings, row: Row, c: _Candidates, problems: list[str]) -> None:
    payload, helpers, ids, in_pos, _ = _output_rows(ev, Generated)
    reasons = (
        helpers["reason"] if helpers is not None
        else column(payload, ev.spec.fields.reason)
    )
    c.extend(payload, ids, in_pos, list(range(len(payload))), reason=reasons,
             texts=_out_texts(ev))
    row["n_in"] = len(ev.in_refs) if ev.in_refs is not None else None
    row["n_out"] = len(payload)
    row.update(m.generation_metrics(len(payload), text_or_none(reasons)))


def _scoring(ev: StageEvent, s: Settings, row: Row, c: _Candidates, problems: list[str]) -> None:
    payload, helpers, ids, in_pos, matched = _output_rows(ev, Scored)
    if helpers is not None:
        scores = helpers["score"]
    elif ev.spec.fields.score is not None:
        scores = column(payload, ev.spec.fields.score)
    else:
        scores = [None] * len(payload)
        problems.append("no score: map one with score='field' or return xr.Scored(item, score)")
    c.extend(payload, ids, in_pos, list(range(len(payload))), score=scores,
             texts=_out_texts(ev))
    in_ids = _input_ids(ev)
    if in_ids is not None:
        _append_unmatched_inputs(ev, c, in_ids, matched)
    row["n_in"] = len(in_ids) if in_ids is not None else None
    row["n_out"] = len(payload)
    row.update(m.scoring_metrics(scores))


def _ranking(ev: StageEvent, s: Settings, row: Row, c: _Candidates, problems: list[str]) -> None:
    payload, helpers, ids, in_pos, matched = _output_rows(ev, Scored)
    scores = (
        helpers["score"] if helpers is not None
        else column(payload, ev.spec.fields.score) if ev.spec.fields.score else None
    )
    c.extend(payload, ids, in_pos, list(range(len(payload))), score=scores,
             texts=_out_texts(ev))
    in_ids = _input_ids(ev)
    if in_ids is not None:
        _append_unmatched_inputs(ev, c, in_ids, matched)
        row.update(m.ranking_metrics(in_ids, ids, s.topk))
    row["n_in"] = len(in_ids) if in_ids is not None else None
    row["n_out"] = len(payload)


def _filtering(ev: StageEvent, s: Settings, row: Row, c: _Candidates, problems: list[str]) -> None:
    f = ev.spec.fields
    if ev.out_snap is not None:  # every candidate came back with a verdict
        payload, helpers, ids, in_pos, matched = _output_rows(ev, Filtered)
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
            problems.append(
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
                 reason_text=texts, texts=_out_texts(ev))
        in_ids = _input_ids(ev)
        if in_ids is not None:
            _append_unmatched_inputs(ev, c, in_ids, matched)
    elif ev.out_refs is not None:  # survivors only: failed = input candidates missing from the output
        _filter_survivors(ev, c)
    else:  # the stage raised or returned no list: its inputs are known, no verdict is
        source = _input_items(ev) or []
        c.extend(source, _input_ids(ev) or [], list(range(len(source))), [None] * len(source),
                 texts=_input_texts(ev))
        row["n_in"] = len(source)
        return
    n_in = len(ev.in_refs) if ev.in_refs is not None else len(c.payload)
    row["n_in"] = n_in
    verdicts = cast("list[bool | None]", c.passed)  # read by truthiness
    # over every candidate row: inputs, plus any the stage returned that it was not given
    row.update(m.filtering_metrics(len(verdicts), verdicts, text_or_none(c.reason_label)))
    row["n_out"] = row["n_passed"]


def _filter_survivors(ev: StageEvent, c: _Candidates) -> None:
    f = ev.spec.fields
    snap = _input_items(ev) or []
    refs = ev.in_refs or snap
    out = ev.out_refs or []
    in_ids = _input_ids(ev) or _id_strings(column(snap, f.id))
    by_identity = {id(obj): j for j, obj in enumerate(out)}
    out_pos: list[int | None] = list(map(by_identity.get, map(id, refs)))
    matched_out = set(out_pos)
    matched_out.discard(None)
    out_ids: list[str | None] = []
    if len(matched_out) < len(out):  # some survivors are new objects: match them by id
        out_ids = _id_strings(column(out, f.id))
        free = [j for j in range(len(out)) if j not in matched_out]  # not matched by identity
        todo = [i for i, j in enumerate(out_pos) if j is None and i < len(in_ids)]
        picks = _match_in_order([in_ids[i] for i in todo], [out_ids[j] for j in free])
        for i, k in zip(todo, picks, strict=True):
            if k is not None:
                out_pos[i] = free[k]
        matched_out = {j for j in out_pos if j is not None}
    c.extend(snap, in_ids, list(range(len(snap))), out_pos,
             passed=[j is not None for j in out_pos],
             reason_label=column(snap, f.reason_label), reason_text=column(snap, f.reason_text),
             texts=_input_texts(ev))
    extra = [j for j in range(len(out)) if j not in matched_out]
    if extra:  # returned candidates that were not in the input
        c.extend([out[j] for j in extra], [out_ids[j] for j in extra], [None] * len(extra),
                 extra, passed=[True] * len(extra))


_BUILDERS: dict[str, Builder] = {
    "retrieval": _retrieval,
    "generation": _generation,
    "scoring": _scoring,
    "ranking": _ranking,
    "filtering": _filtering,
}


# --- metric plugins ---------------------------------------------------------------------


def _plugin_columns(c: _Candidates | None) -> plugins.TableFactory | None:
    """What metric plugins read: every candidate row of the stage (before sampling) as an
    Arrow table, built only if a plugin runs: the standard columns, then candidate fields."""
    if c is None:
        return None

    def table(fields: Sequence[tuple[str, str]], standard: bool) -> pa.Table:
        columns: dict[str, pa.Array] = {}
        if standard:
            columns = {
                "candidate_id": pa.array(c.ids, pa.string()),
                "in_position": pa.array(c.in_pos, pa.int32()),
                "out_position": pa.array(c.out_pos, pa.int32()),
                "passed": verdicts(c.passed),
                "reason_label": _array(c.reason_label, pa.string(), text_or_none),
                "reason_text": _array(c.reason_text, pa.string(), text_or_none),
                "score": scores(c.score),
                "reason": _array(c.reason, pa.string(), text_or_none),
            }
        for name, key in fields:  # inferred type; mixed types as text
            columns[name] = _array(column(c.payload, key), None, text_or_none)
        return pa.table(columns)

    return table


def _array(values: list[object], kind: pa.DataType | None,
           convert: Callable[[list[object]], list[Any]]) -> pa.Array:
    """`values` as an Arrow array in one C-level pass when they already fit, else converted."""
    try:
        return pa.array(values, kind)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return pa.array(convert(values), kind or pa.string())
