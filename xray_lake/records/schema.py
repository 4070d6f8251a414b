"""Explicit Arrow schemas of the three tables: never inferred, so no file drifts or holds null-typed columns."""

from __future__ import annotations

import pyarrow as pa

from xray_lake.records.metrics import METRIC_COLUMNS

TS = pa.timestamp("us", tz="UTC")
JSON = pa.large_string()

# Bumped whenever a table gains columns. Files carry it in their name (`part-v1-…`), so the
# views read each version with one uniform schema (no per-file footer reads at planning,
# which would defeat partition pruning) and union versions by name.
SCHEMA_VERSION = 1

# Columns that come from the folder names (label=/date=), not from the files.
PARTITION_COLUMNS = ("label", "date")

_STATUS_COLUMNS = [
    pa.field("status", pa.string()),
    pa.field("error_message", pa.string()),
    pa.field("error_code", pa.string()),
]

RUNS = pa.schema(
    [
        pa.field("run_id", pa.string()),
        pa.field("started_at", TS),
        pa.field("finished_at", TS),
        pa.field("duration_ms", pa.float64()),
        *_STATUS_COLUMNS,
        pa.field("n_stages", pa.int32()),
        pa.field("attributes", JSON),
        pa.field("input_json", JSON),
        pa.field("output_json", JSON),
        pa.field("sdk_version", pa.string()),
        pa.field("host", pa.string()),
        pa.field("pid", pa.int32()),
    ]
)

STAGES = pa.schema(
    [
        pa.field("run_id", pa.string()),
        pa.field("stage_id", pa.string()),
        pa.field("name", pa.string()),
        pa.field("type", pa.string()),
        pa.field("seq", pa.int32()),
        pa.field("parent_stage_id", pa.string()),
        pa.field("started_at", TS),
        pa.field("finished_at", TS),
        pa.field("duration_ms", pa.float64()),
        *_STATUS_COLUMNS,
        pa.field("input_json", JSON),
        pa.field("output_json", JSON),
        pa.field("n_in", pa.int64()),
        pa.field("n_out", pa.int64()),
        *(pa.field(name, pa.type_for_alias(kind)) for name, kind in METRIC_COLUMNS.items()),
        pa.field("reason_counts", pa.map_(pa.string(), pa.int64())),
        pa.field("metrics", pa.map_(pa.string(), pa.float64())),
        pa.field("sampled", pa.bool_()),
        pa.field("sample_rate", pa.float64()),
        pa.field("n_candidates_stored", pa.int64()),
        pa.field("n_truncated", pa.int64()),
        pa.field("validation_error", pa.string()),
    ]
)

CANDIDATES = pa.schema(
    [
        pa.field("run_id", pa.string()),
        pa.field("stage_id", pa.string()),
        pa.field("stage_name", pa.string()),
        pa.field("stage_type", pa.string()),
        pa.field("candidate_id", pa.string()),
        pa.field("in_position", pa.int32()),
        pa.field("out_position", pa.int32()),
        pa.field("passed", pa.bool_()),
        pa.field("reason_label", pa.string()),
        pa.field("reason_text", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("reason", pa.string()),
        pa.field("payload", JSON),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {"runs": RUNS, "stages": STAGES, "candidates": CANDIDATES}

# Low-cardinality columns worth Parquet dictionary encoding; the rest (ids, JSON) only waste
# the writer's time trying.
DICTIONARY_COLUMNS: dict[str, list[str]] = {
    "runs": ["status", "error_code", "sdk_version", "host"],
    "stages": ["run_id", "name", "type", "status", "error_code", "parent_stage_id"],
    "candidates": ["run_id", "stage_id", "stage_name", "stage_type", "reason_label"],
}


def table_schema(table: str) -> pa.Schema:
    """The schema a reader sees: file columns plus the partition columns as strings."""
    schema = SCHEMAS[table]
    for name in PARTITION_COLUMNS:
        schema = schema.append(pa.field(name, pa.string()))
    return schema
