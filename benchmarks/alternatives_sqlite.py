"""Alternative (c): SQLite (stdlib sqlite3) with one JSON text column per collection and json_extract.

Tables `pipelines(doc text)` and `stages(doc text)` in one database file, filled by
`executemany` in one transaction, then the expression indexes a user would add for these
questions: pipelines on `$.id`, stages on `$.pipelineId`, (`$.type`, `$.metadata.failRatio`)
and `$.startedAt`; ANALYZE. SQLite has no percentile function, so question 7 registers a small
Python aggregate (`percentile_cont`, interpolating like PostgreSQL and DuckDB).
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from dataclasses import dataclass

from _common import Row
from alternatives_common import DocFiles, Params

INDEXES = (
    "create index pipelines_id on pipelines (json_extract(doc, '$.id'))",
    "create index stages_pipeline on stages (json_extract(doc, '$.pipelineId'))",
    "create index stages_type_fail on stages "
    "(json_extract(doc, '$.type'), json_extract(doc, '$.metadata.failRatio'))",
    "create index stages_started on stages (json_extract(doc, '$.startedAt'))",
)


class PercentileCont:
    """`percentile_cont(value, fraction)`: linear interpolation between the closest ranks."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.fraction = 0.5

    def step(self, value: float | None, fraction: float) -> None:
        if value is not None:
            self.values.append(float(value))
        self.fraction = fraction

    def finalize(self) -> float | None:
        if not self.values:
            return None
        values = sorted(self.values)
        pos = self.fraction * (len(values) - 1)
        low = math.floor(pos)
        high = min(low + 1, len(values) - 1)
        return values[low] + (values[high] - values[low]) * (pos - low)


@dataclass
class LoadInfo:
    insert_s: float
    index_s: float
    bytes_total: int


class SqliteEngine:
    name = "SQLite JSON"

    def __init__(self, path: str) -> None:
        self.path = path
        self.con = sqlite3.connect(path)
        self.con.create_aggregate("percentile_cont", 2, PercentileCont)  # type: ignore[arg-type]

    def load(self, files: DocFiles) -> LoadInfo:
        con = self.con
        con.execute("create table pipelines (doc text not null)")
        con.execute("create table stages (doc text not null)")
        t0 = time.perf_counter()
        with con:
            for table, paths in (("pipelines", files.pipelines), ("stages", files.stages)):
                for path in paths:
                    with open(path, encoding="utf-8") as fh:
                        con.executemany(f"insert into {table} (doc) values (?)",
                                        ((line.rstrip("\n"),) for line in fh))
        t1 = time.perf_counter()
        with con:
            for statement in INDEXES:
                con.execute(statement)
            con.execute("analyze")
        t2 = time.perf_counter()
        return LoadInfo(round(t1 - t0, 2), round(t2 - t1, 2), os.path.getsize(self.path))

    def counts(self) -> dict[str, int]:
        runs = self.con.execute("select count(*) from pipelines").fetchone()[0]
        stages, candidates = self.con.execute(
            "select count(*), sum(json_array_length(doc, '$.candidates')) from stages").fetchone()
        return {"runs": int(runs), "stages": int(stages), "candidates": int(candidates or 0)}

    def answer(self, key: str, p: Params) -> list[Row]:
        con = self.con
        if key == "1":
            rows = con.execute("""
                select json_extract(s.doc, '$.pipelineId'), json_extract(s.doc, '$.name'),
                       json_extract(p.doc, '$.label'), json_extract(s.doc, '$.metadata.failRatio')
                from stages s join pipelines p
                  on json_extract(p.doc, '$.id') = json_extract(s.doc, '$.pipelineId')
                where json_extract(s.doc, '$.type') = 'filtering'
                  and json_extract(s.doc, '$.metadata.failRatio') > 0.9""").fetchall()
            return sorted(rows)
        if key == "3":
            return con.execute("""
                select label, stage, reason, dropped from (
                  select json_extract(p.doc, '$.label') as label,
                         json_extract(s.doc, '$.name') as stage, r.key as reason,
                         sum(r.value) as dropped,
                         row_number() over (partition by json_extract(p.doc, '$.label'),
                                                         json_extract(s.doc, '$.name')
                                            order by sum(r.value) desc, r.key) as rank
                  from stages s
                  join pipelines p
                    on json_extract(p.doc, '$.id') = json_extract(s.doc, '$.pipelineId')
                  join json_each(s.doc, '$.metadata.reasonCounts') r
                  where json_extract(s.doc, '$.type') = 'filtering'
                    and json_extract(s.doc, '$.startedAt') >= ?
                  group by 1, 2, 3)
                where rank <= 3
                order by label, stage, dropped desc, reason""", (p.since_text,)).fetchall()
        if key == "4":
            rows = con.execute("""
                select json_extract(s.doc, '$.seq'), json_extract(s.doc, '$.name'),
                       json_extract(c.value, '$.inPosition'),
                       json_extract(c.value, '$.outPosition'),
                       json_extract(c.value, '$.passed'), json_extract(c.value, '$.reasonLabel'),
                       json_extract(c.value, '$.score')
                from stages s join json_each(s.doc, '$.candidates') c
                where json_extract(s.doc, '$.pipelineId') = ?
                  and json_extract(c.value, '$.id') = ?
                order by 1""", (p.run_id, p.candidate_id)).fetchall()
            # JSON true/false come back as 1/0 from json_extract
            return [(*r[:4], None if r[4] is None else bool(r[4]), *r[5:]) for r in rows]
        if key == "7":
            return con.execute("""
                select label, name, p90_ms from (
                  select label, name, p90_ms,
                         row_number() over (partition by label order by p90_ms desc) as rank
                  from (select json_extract(p.doc, '$.label') as label,
                               json_extract(s.doc, '$.name') as name,
                               percentile_cont(json_extract(s.doc, '$.duration'), 0.9) as p90_ms
                        from stages s join pipelines p
                          on json_extract(p.doc, '$.id') = json_extract(s.doc, '$.pipelineId')
                        group by 1, 2))
                where rank = 1 order by label""").fetchall()
        raise KeyError(key)

    def close(self) -> None:
        self.con.close()
