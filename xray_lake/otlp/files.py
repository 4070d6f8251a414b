"""`xray-lake import`: OTLP JSON files (one request object, or one per line as the
OpenTelemetry Collector's file exporter writes them) into the lake, a run per trace."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from xray_lake.otlp.decode import BadRequest, Decoded, Limits, SpanData, from_json, spans_of
from xray_lake.otlp.mapping import Options, record_trace


@dataclass
class Imported:
    """What an import read and wrote."""

    files: int = 0
    spans: int = 0
    runs: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    bad_files: list[str] = field(default_factory=list)


def read_file(path: str | Path, limits: Limits | None = None) -> Decoded:
    """Every span of one OTLP JSON file; raises BadRequest naming the file and line."""
    text = Path(path).read_bytes()
    out = Decoded()
    try:
        documents = [orjson.loads(text)]
    except orjson.JSONDecodeError:  # JSON lines: one request per line
        documents = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    documents.append(orjson.loads(line))
                except orjson.JSONDecodeError as exc:
                    raise BadRequest(f"{path}:{n}: not JSON ({exc})") from None
    for document in documents:
        try:
            part = spans_of(from_json(document), limits)
        except BadRequest as exc:
            raise BadRequest(f"{path}: {exc}") from None
        out.spans.extend(part.spans)
        out.rejected.update(part.rejected)
    return out


def import_files(paths: list[str], options: Options | None = None,
                 limits: Limits | None = None) -> Imported:
    """Read every file, then write each trace once (its spans may span files)."""
    result = Imported()
    traces: dict[str, dict[str, SpanData]] = {}
    for path in paths:
        try:
            decoded = read_file(path, limits)
        except BadRequest as exc:
            result.bad_files.append(str(exc))
            continue
        result.files += 1
        result.rejected.update(decoded.rejected)
        for span in decoded.spans:
            spans = traces.setdefault(span.trace_id, {})
            if span.span_id in spans:
                result.rejected["duplicate span (already read)"] += 1
                continue
            spans[span.span_id] = span
            result.spans += 1
    for spans in traces.values():
        record_trace(list(spans.values()), options)
        result.runs += 1
    return result
