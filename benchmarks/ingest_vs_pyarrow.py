"""Ingest baselines: pyarrow writing the rows the SDK wrote straight to Parquet, without the SDK.

The rows are the SDK's own files, read back whole partition by partition (runs, stages and
candidates of each label/date, until `min_rows` candidate rows), so both sides write the same
rows with the same schema and the same Parquet settings (`xray_lake.storage.fs.write_parquet`,
zstd at the configured level, the same dictionary columns), one output file per SDK file:
  (i) encoded: the Arrow table as read (JSON columns already text) -> write_parquet;
  (ii) from dicts: Python dicts with the JSON columns as Python values (parsed back before the
      clock starts) -> orjson.dumps of each JSON value -> pa.Table.from_pylist -> write_parquet.
Candidate rows per second of wall time, the other tables' rows written on the same clock.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from xray_lake.records.schema import JSON, SCHEMAS
from xray_lake.storage.fs import write_parquet

TABLES = ("runs", "stages", "candidates")
SLICE_ROWS = 20_000  # dicts are made and encoded in slices: bounded memory at any scale


@dataclass
class DirectWrite:
    partitions: int
    files: int
    candidate_rows: int
    other_rows: int
    encoded_s: float
    encoded_rows_per_s: float
    encoded_bytes: int
    dicts_s: float
    dicts_rows_per_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _partitions(root: str) -> list[str]:
    """`label=…/date=…` folders of the candidates table, in order."""
    base = os.path.join(root, "candidates")
    found = []
    for label in sorted(os.listdir(base)):
        for date in sorted(os.listdir(os.path.join(base, label))):
            found.append(f"{label}/{date}")
    return found


def _files(root: str, table: str, part: str) -> list[str]:
    folder = os.path.join(root, table, part)
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                  if n.endswith(".parquet") and not n.startswith("."))


def _read(path: str) -> pa.Table:
    with open(path, "rb") as fh:  # a file object: the file's columns only, no hive columns
        return pq.ParquetFile(fh).read()


def _json_columns(table: str) -> list[str]:
    return [f.name for f in SCHEMAS[table] if f.type == JSON]


def _as_dicts(data: pa.Table, json_columns: list[str]) -> list[dict[str, Any]]:
    """What a program holds before writing: dicts whose JSON fields are Python values."""
    rows = data.to_pylist()
    for row in rows:
        for col in json_columns:
            if row[col] is not None:
                row[col] = orjson.loads(row[col])
    return rows


def _from_dicts(rows: list[dict[str, Any]], table: str, json_columns: list[str]) -> pa.Table:
    for row in rows:
        for col in json_columns:
            if row[col] is not None:
                row[col] = orjson.dumps(row[col]).decode()
    return pa.Table.from_pylist(rows, schema=SCHEMAS[table])


def direct_write(root: str, out: str, min_rows: int, level: int) -> DirectWrite:
    """Write whole partitions of the lake at `root` again, both ways, into `out` (removed after)."""
    os.makedirs(out, exist_ok=True)
    chosen: list[str] = []
    rows = 0
    for part in _partitions(root):
        chosen.append(part)
        rows += sum(pq.ParquetFile(p).metadata.num_rows
                    for p in _files(root, "candidates", part))
        if rows >= min_rows:
            break
    encoded_s = dicts_s = 0.0
    candidate_rows = other_rows = files = encoded_bytes = 0
    try:
        for part in chosen:
            for table in TABLES:
                json_columns = _json_columns(table)
                for path in _files(root, table, part):
                    data = _read(path)
                    files += 1
                    if table == "candidates":
                        candidate_rows += data.num_rows
                    else:
                        other_rows += data.num_rows
                    target = os.path.join(out, f"{files:06d}-{table}.parquet")
                    t0 = time.perf_counter()
                    write_parquet(data, target, table, level)
                    encoded_s += time.perf_counter() - t0
                    encoded_bytes += os.path.getsize(target)
                    os.unlink(target)

                    pieces = []
                    for start in range(0, data.num_rows, SLICE_ROWS):
                        dicts = _as_dicts(data.slice(start, SLICE_ROWS), json_columns)
                        t0 = time.perf_counter()
                        pieces.append(_from_dicts(dicts, table, json_columns))
                        dicts_s += time.perf_counter() - t0
                        del dicts
                    t0 = time.perf_counter()
                    write_parquet(pa.concat_tables(pieces), target, table, level)
                    dicts_s += time.perf_counter() - t0
                    os.unlink(target)
                    del data, pieces
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return DirectWrite(
        partitions=len(chosen), files=files, candidate_rows=candidate_rows,
        other_rows=other_rows, encoded_s=round(encoded_s, 3),
        encoded_rows_per_s=round(candidate_rows / max(encoded_s, 1e-9)),
        encoded_bytes=encoded_bytes, dicts_s=round(dicts_s, 3),
        dicts_rows_per_s=round(candidate_rows / max(dicts_s, 1e-9)),
    )
