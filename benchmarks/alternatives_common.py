"""What users would pick instead, shared part: the four questions, xray-lake's answers, and the lake exported as JSON documents.

The document model is the original design's (shared/original-design.md), which is also what a
program logging its own JSON would write: two collections,
  * `pipelines`: one document per run: id, label, startedAt, finishedAt, duration, status,
    error {message, code}, nStages, attributes, input, output, sdkVersion, host, pid;
  * `stages`: one document per stage execution, its candidates embedded (the design keeps
    candidates inside the stage's input/output): id, pipelineId, name, type, seq, startedAt,
    finishedAt, duration, status, error, input, output, metadata {nIn, nOut, failRatio, ...
    every precomputed metric in camelCase, reasonCounts, metrics}, sampled, sampleRate,
    nCandidatesStored, nTruncated, candidates [{id, inPosition, outPosition, passed,
    reasonLabel, reasonText, score, reason, data}] (`data`: the candidate's JSON).
Each candidate is stored once per stage, as in the lake (the design's separate input and
output lists would store it twice). Null fields are left out, as a hand-written logger would.
Timestamps are ISO-8601 UTC strings with microseconds (`2026-11-25T10:00:00.123456Z`).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from _common import Row

import xray_lake as xr
from xray_lake.query.builder import stage
from xray_lake.query.questions import SLOWEST_STAGE_P90 as Q7_SQL
from xray_lake.query.questions import TOP_DROP_REASONS as Q3_SQL
from xray_lake.records.metrics import METRIC_COLUMNS

TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # the same text from DuckDB's strftime and Python's

QUESTIONS: dict[str, str] = {
    "1": "filtering stages that eliminated > 90% (with their run's label)",
    "3": "top 3 drop reasons per filtering stage, last 7 days",
    "4": "journey of candidate X in run R (why it never reached the ranking)",
    "7": "slowest stage per label at p90",
}
"""The questions compared (numbers as in docs/questions.md); every engine answers each one with rows:
1: (run_id, stage, label, fail_ratio) sorted; 3: (label, stage, reason, dropped) in the order
of the lake's query; 4: (seq, stage, in_position, out_position, passed, reason_label, score)
by seq; 7: (label, slowest stage, p90 ms) by label."""


@dataclass(frozen=True)
class Params:
    """Fixed once, so every engine answers exactly the same question."""

    since: dt.datetime  # question 3's window start (UTC)
    run_id: str  # question 4
    candidate_id: str

    @property
    def since_text(self) -> str:
        return self.since.strftime(TS_FORMAT)


class Engine(Protocol):
    """One way of storing the same data; answers the compared questions as normalised rows."""

    name: str

    def answer(self, key: str, p: Params) -> list[Row]: ...

    def close(self) -> None: ...


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


# --- xray-lake's answers ------------------------------------------------------------------


class LakeEngine:
    """The documented calls: the typed builder for question 1 (asking for the same four
    columns the other engines return; `lake.find`, with every column, is timed in queries.py),
    `lake.sql(Q3_SQL)`, `lake.journey`, `lake.sql(Q7_SQL)`.

    One long-lived `xr.Lake`, as a service or notebook keeps, like the other engines' open
    connections. `cache_after=1`: the in-memory copy of `runs`/`stages` (docs/querying-at-scale.md)
    is made by the first query that reads a table, so the first call's time includes making
    it and the warm median is the steady state; with the default (3) the median of these few
    repeats would mix file reads, the copy and copied reads."""

    name = "xray-lake"

    def __init__(self, root: str) -> None:
        self.lake = xr.Lake(root, cache_after=1)

    def answer(self, key: str, p: Params) -> list[Row]:
        lake = self.lake
        if key == "1":
            found = lake.query().where(stage.type == "filtering", stage.fail_ratio > 0.9).select(
                stage.run_id, stage.name, stage.label, stage.fail_ratio).to_polars()
            return sorted(found.rows())
        if key == "3":
            return lake.sql(Q3_SQL, {"day": p.since.date().isoformat(), "since": p.since}).rows()
        if key == "4":
            steps = lake.journey(p.run_id, p.candidate_id).steps
            return steps.select("seq", "stage", "in_position", "out_position", "passed",
                                "reason_label", "score").rows()
        if key == "7":
            return lake.sql(Q7_SQL).rows()
        raise KeyError(key)

    def close(self) -> None:
        self.lake.close()


# --- export --------------------------------------------------------------------------------


def _ts(column: str) -> str:
    return f"strftime({column}, '{TS_FORMAT}')"


_STAGE_DOCS = f"""
with c as (
  select run_id, stage_id,
         list({{'id': candidate_id, 'inPosition': in_position, 'outPosition': out_position,
                'passed': passed, 'reasonLabel': reason_label, 'reasonText': reason_text,
                'score': score, 'reason': reason, 'data': payload::json}}
              order by coalesce(in_position, out_position), out_position) as candidates
  from candidates where label = $label and date = $date
  group by run_id, stage_id
)
select to_json({{
  'id': s.stage_id, 'pipelineId': s.run_id, 'name': s.name, 'type': s.type, 'seq': s.seq,
  'parentId': s.parent_stage_id, 'startedAt': {_ts('s.started_at')},
  'finishedAt': {_ts('s.finished_at')}, 'duration': s.duration_ms, 'status': s.status,
  'error': {{'message': s.error_message, 'code': s.error_code}},
  'input': s.input_json::json, 'output': s.output_json::json,
  'metadata': {{'nIn': s.n_in, 'nOut': s.n_out,
               {", ".join(f"'{camel(m)}': s.{m}" for m in METRIC_COLUMNS)},
               'reasonCounts': s.reason_counts, 'metrics': s.metrics}},
  'sampled': s.sampled, 'sampleRate': s.sample_rate,
  'nCandidatesStored': s.n_candidates_stored, 'nTruncated': s.n_truncated,
  'validationError': s.validation_error,
  'candidates': coalesce(c.candidates, [])}})
from stages s left join c using (run_id, stage_id)
where s.label = $label and s.date = $date
order by s.started_at, s.run_id, s.seq
"""

_RUN_DOCS = f"""
select to_json({{
  'id': run_id, 'label': label, 'startedAt': {_ts('started_at')},
  'finishedAt': {_ts('finished_at')}, 'duration': duration_ms, 'status': status,
  'error': {{'message': error_message, 'code': error_code}}, 'nStages': n_stages,
  'attributes': attributes::json, 'input': input_json::json, 'output': output_json::json,
  'sdkVersion': sdk_version, 'host': host, 'pid': pid}})
from runs where label = $label and date = $date
order by started_at, run_id
"""


def _strip(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if v is not None}


def _run_doc(text: str) -> bytes:
    doc = _strip(orjson.loads(text))
    error = _strip(doc.pop("error", None) or {})
    if error:
        doc["error"] = error
    return orjson.dumps(doc)


def _stage_doc(text: str) -> tuple[bytes, int]:
    doc = _strip(orjson.loads(text))
    error = _strip(doc.pop("error", None) or {})
    if error:
        doc["error"] = error
    meta = {k: v for k, v in doc.pop("metadata").items() if v is not None and v != {}}
    doc["metadata"] = meta
    doc["candidates"] = [_strip(c) for c in doc["candidates"]]
    return orjson.dumps(doc), len(doc["candidates"])


@dataclass
class DocFiles:
    """The exported collections: one JSON-lines file per collection and lake partition."""

    folder: str
    pipelines: list[str] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)
    runs: int = 0
    stage_docs: int = 0
    candidates: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def glob(self, collection: str) -> str:
        return os.path.join(self.folder, f"{collection}-*.jsonl")


def export(root: str, folder: str,
           progress: Callable[[int, int], None] | None = None) -> DocFiles:
    """Write the lake's rows as the two collections above, partition by partition (bounded
    memory: DuckDB builds each partition's documents, Python drops their null fields)."""
    t0 = time.perf_counter()
    os.makedirs(folder, exist_ok=True)
    files = DocFiles(folder)
    with xr.Lake(root) as lake:
        con = lake.connection
        parts = con.execute("select distinct label, date from stages union "
                            "select distinct label, date from runs order by 1, 2").fetchall()
        for i, (label, date) in enumerate(parts):
            if progress is not None:
                progress(i, len(parts))
            tag = f"{label}-{date}".replace(os.sep, "_")
            params = {"label": label, "date": date}
            path = os.path.join(folder, f"pipelines-{tag}.jsonl")
            with open(path, "wb") as out:
                reader = con.sql(_RUN_DOCS, params=params).to_arrow_reader(4096)
                for batch in reader:
                    for text in batch.column(0).to_pylist():
                        out.write(_run_doc(text) + b"\n")
                        files.runs += 1
            files.pipelines.append(path)
            path = os.path.join(folder, f"stages-{tag}.jsonl")
            with open(path, "wb") as out:
                reader = con.sql(_STAGE_DOCS, params=params).to_arrow_reader(256)
                for batch in reader:
                    for text in batch.column(0).to_pylist():
                        doc, n = _stage_doc(text)
                        out.write(doc + b"\n")
                        files.stage_docs += 1
                        files.candidates += n
            files.stages.append(path)
        if progress is not None:
            progress(len(parts), len(parts))
    files.bytes = sum(os.path.getsize(p) for p in (*files.pipelines, *files.stages))
    files.seconds = time.perf_counter() - t0
    return files


def iter_lines(paths: list[str], chunk: int = 1 << 20) -> Any:
    """The bytes of JSON-lines files, in chunks (COPY ... FROM STDIN takes a byte stream)."""
    for path in paths:
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                yield block
