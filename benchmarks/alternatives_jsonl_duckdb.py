"""Alternative (a): the exported JSON-lines collections queried in place by DuckDB's `read_json`.

What a user who logs JSON lines and reaches for DuckDB would write: `read_json(glob)` with
automatic schema detection, dot access into the detected structs, no load step, no index.
Every query parses every file again.
"""

from __future__ import annotations

import duckdb
from _common import Row
from alternatives_common import DocFiles, Params


def _quote(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


class JsonLinesEngine:
    name = "JSON-lines + DuckDB read_json"

    def __init__(self, files: DocFiles) -> None:
        self.files = files
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET TimeZone = 'UTC'")
        self.stages = f"read_json({_quote(files.glob('stages'))})"
        self.pipelines = f"read_json({_quote(files.glob('pipelines'))})"

    def counts(self) -> dict[str, int]:
        """Documents and embedded candidates, counted from the raw lines (cheaper than the
        schema-detecting reader, same files)."""
        raw = "read_ndjson_objects({})"
        (runs,), = self.con.execute(
            f"select count(*) from {raw.format(_quote(self.files.glob('pipelines')))}").fetchall()
        stages, candidates = self.con.execute(
            "select count(*), sum(json_array_length(json, '$.candidates')) "
            f"from {raw.format(_quote(self.files.glob('stages')))}").fetchall()[0]
        return {"runs": int(runs), "stages": int(stages), "candidates": int(candidates or 0)}

    def answer(self, key: str, p: Params) -> list[Row]:
        s, r = self.stages, self.pipelines
        if key == "1":
            rows = self.con.execute(f"""
                select s.pipelineId, s.name, p.label, s.metadata.failRatio
                from {s} s join {r} p on p.id = s.pipelineId
                where s.type = 'filtering' and s.metadata.failRatio > 0.9""").fetchall()
            return sorted(rows)
        if key == "3":
            return self.con.execute(f"""
                select p.label, s.name as stage, s.e.key as reason,
                       sum(s.e.value)::bigint as dropped
                from (select pipelineId, name,
                             unnest(map_entries(
                                 to_json(metadata.reasonCounts)::MAP(VARCHAR, BIGINT))) as e
                      from {s} where type = 'filtering' and startedAt >= $since) s
                join {r} p on p.id = s.pipelineId
                where s.e.value is not null
                group by p.label, stage, reason
                qualify row_number() over (partition by p.label, stage
                                           order by dropped desc, reason) <= 3
                order by p.label, stage, dropped desc, reason""",
                {"since": p.since}).fetchall()
        if key == "4":
            return self.con.execute(f"""
                select seq, name, c.inPosition, c.outPosition, c.passed, c.reasonLabel, c.score
                from (select seq, name, unnest(candidates) as c from {s}
                      where pipelineId = $run)
                where c.id = $candidate
                order by seq""", {"run": p.run_id, "candidate": p.candidate_id}).fetchall()
        if key == "7":
            return self.con.execute(f"""
                select label, arg_max(name, p90_ms) as slowest_stage, max(p90_ms) as p90_ms
                from (select p.label, s.name, quantile_cont(s.duration, 0.9) as p90_ms
                      from {s} s join {r} p on p.id = s.pipelineId group by all)
                group by label order by label""").fetchall()
        raise KeyError(key)

    def close(self) -> None:
        self.con.close()
