"""Explicit Arrow schemas of the three tables: never inferred, so no file drifts or holds null-typed columns."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import pyarrow as pa

from xray_lake.records.metrics import METRIC_COLUMNS

TS = pa.timestamp("us", tz="UTC")
JSON = pa.large_string()

# Bumped whenever a table gains columns. Files carry it in their name (`part-v1-…`), so the
# views read each version with one uniform schema (no per-file footer reads at planning,
# which would defeat partition pruning) and union versions by name.
SCHEMA_VERSION = 2

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
        # what of the run was shed (status 'incomplete'): stage records and candidate rows
        pa.field("n_stages_shed", pa.int64()),
        pa.field("n_candidates_shed", pa.int64()),
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

# Row order and row-group size of every file a table gets (flush, spool, replay, compaction).
# Sorting lets DuckDB skip row groups by their min/max statistics; the measurements behind
# each choice are in benchmarks/RESULTS.md ("File layout").
# - stages by (type, fail_ratio): "filtering stages that dropped > 90%" reads one small row
#   group per file instead of the whole file.
# - runs and candidates by (run_id, stage_id): journeys and funnels look runs up by id.
#   A flush leaves candidates in arrival order, already grouped by stage and run: sorting
#   them would add a large share to the writer's Parquet cost; compaction sorts them.
SORT_KEYS: dict[str, tuple[str, ...]] = {
    "runs": ("run_id",),
    "stages": ("type", "fail_ratio", "name", "run_id", "seq"),
    "candidates": ("run_id", "stage_id"),
}
ROW_GROUP_ROWS: dict[str, int] = {"runs": 16_384, "stages": 4_096, "candidates": 131_072}
SORTED_AT_FLUSH: frozenset[str] = frozenset({"runs", "stages"})


def table_schema(table: str) -> pa.Schema:
    """The schema a reader sees: file columns plus the partition columns as strings."""
    schema = SCHEMAS[table]
    for name in PARTITION_COLUMNS:
        schema = schema.append(pa.field(name, pa.string()))
    return schema


# --- promoted fields (records/promoted.py): extra typed columns of `candidates` ------------

_NUMBERS = frozenset({pa.int64(), pa.float64()})


def unify_types(types: Iterable[pa.DataType]) -> pa.DataType:
    """The one rule for a promoted column seen with several types (in one flush, or across
    files): all the same -> that type; int64 and float64 -> float64; any other mix -> string."""
    kinds = set(types)
    if len(kinds) == 1:
        return kinds.pop()
    return pa.float64() if kinds <= _NUMBERS else pa.string()


def promoted_fields(schema: pa.Schema) -> list[pa.Field]:
    """The promoted columns of a candidates file or batch (those after the fixed ones)."""
    fixed = CANDIDATES.names
    return [f for f in schema if f.name not in fixed and f.name not in PARTITION_COLUMNS]


def promoted_tag(table: str, schema: pa.Schema) -> str:
    """'' for a file of the fixed columns only (and for runs and stages), else a short hash of
    its promoted columns and types: file names carry it, so each read_parquet glob covers
    files of one schema."""
    if table != "candidates":
        return ""
    extra = promoted_fields(schema)
    if not extra:
        return ""
    text = ";".join(f"{f.name}:{f.type}" for f in sorted(extra, key=lambda f: f.name))
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def candidates_table(tables: Sequence[pa.Table]) -> pa.Table:
    """Candidate rows as one table, without copying them: the fixed columns, then every
    promoted column any table has (sorted by name, types unified by `unify_types`, null where
    a table lacks it)."""
    if all(t.num_columns == len(CANDIDATES) for t in tables):
        return pa.concat_tables(tables)
    table = concat_unified(tables)
    extra = sorted(f.name for f in promoted_fields(table.schema))
    return table.select([*CANDIDATES.names, *extra])


def concat_unified(tables: Sequence[pa.Table]) -> pa.Table:
    """Tables whose promoted columns may differ, as one: a column some lack is null there, a
    column seen with several types gets the `unify_types` one (as the lake's views read it)."""
    seen: dict[str, set[pa.DataType]] = {}
    for table in tables:
        for f in table.schema:
            seen.setdefault(f.name, set()).add(f.type)
    target = {name: unify_types(types) for name, types in seen.items() if len(types) > 1}
    if target:  # unsafe: an int beyond 2**53 becomes the nearest float, as readers see it
        tables = [t.cast(pa.schema([f.with_type(target.get(f.name, f.type)) for f in t.schema]),
                         safe=False)
                  for t in tables]
    return pa.concat_tables(tables, promote_options="permissive")
