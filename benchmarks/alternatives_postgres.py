"""Alternative (b): PostgreSQL JSONB, one documents table per collection, as the original design's Mongo model.

The benchmark starts its own server: the Debian `postgresql` binaries (found through
`pg_config --bindir`, PATH or /usr/lib/postgresql/*/bin), a fresh data directory in a temp
folder, 127.0.0.1 on a free port, trust authentication, C locale (byte-order text, as DuckDB
and SQLite sort), stopped and deleted afterwards, also on error. PostgreSQL refuses to run as
root, so as root the server runs as the `postgres` user (else `nobody`) through `runuser`.
Settings a user would make for a bulk load and this machine: fsync, synchronous_commit and
full_page_writes off (load speed only), shared_buffers 512MB, maintenance_work_mem 512MB,
work_mem 64MB; everything else default (parallel query and JIT as shipped).

Tables `pipelines(doc jsonb)` and `stages(doc jsonb)`, loaded with COPY, then the indexes a
reasonable user would add: a GIN index (jsonb_path_ops) per table for `@>` look-ups, and
btree expression indexes on the fields the questions filter and join on (pipelines: id,
label; stages: pipelineId, (type, failRatio), startedAt), then ANALYZE. The btree indexes go
beyond the issue's (b) ("one documents table per collection with GIN indexes"), making the
baseline stronger; after every question is timed with them, they are dropped and question 1
is timed again on GIN indexes only (`GIN_ONLY_Q1`), the setup exactly as the issue defines it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from _common import Row
from alternatives_common import DocFiles, Params, iter_lines

SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "512MB",
    "maintenance_work_mem": "512MB",
    "work_mem": "64MB",
    "max_wal_size": "4GB",
}
GIN_INDEXES = (
    "create index pipelines_doc on pipelines using gin (doc jsonb_path_ops)",
    "create index stages_doc on stages using gin (doc jsonb_path_ops)",
)
"""What the issue's (b) specifies: one GIN index per documents table, nothing else."""
BTREE_INDEXES = {
    "pipelines_id": "create index pipelines_id on pipelines ((doc->>'id'))",
    "pipelines_label": "create index pipelines_label on pipelines ((doc->>'label'))",
    "stages_pipeline": "create index stages_pipeline on stages ((doc->>'pipelineId'))",
    "stages_type_fail": "create index stages_type_fail on stages "
                        "((doc->>'type'), ((doc->'metadata'->>'failRatio')::float8))",
    "stages_started": "create index stages_started on stages ((doc->>'startedAt'))",
}
"""Added beyond the issue's (b) so the baseline is stronger; dropped for the GIN-only figure."""
INDEXES = (*GIN_INDEXES, *BTREE_INDEXES.values())
_TOOLS = ("initdb", "pg_ctl", "postgres")
JSONPATH_Q1 = "1-jsonpath"
"""Question 1 as one jsonpath filter (`doc @? '$ ? (...)'`), the form a Mongo-minded user
writes: the GIN index can serve only its equality part, the failRatio expression index not
at all. Timed beside question 1 to show how much the answer owes to that expression index."""
GIN_ONLY_Q1 = "1-gin-only"
"""Question 1 as the issue's (b) defines the engine: only the GIN (jsonb_path_ops) indexes
exist (the btree expression indexes are dropped first, see `drop_btree_indexes`), and the
question is written the natural way for that model: `@>` containment for the type (which the
GIN index serves) plus the failRatio comparison, joined to the run by id."""
_GIN_ONLY_SQL = """
    select s.doc->>'pipelineId', s.doc->>'name', p.doc->>'label',
           (s.doc->'metadata'->>'failRatio')::float8
    from stages s join pipelines p on p.doc->>'id' = s.doc->>'pipelineId'
    where s.doc @> '{"type": "filtering"}'
      and (s.doc->'metadata'->>'failRatio')::float8 > 0.9"""


class PostgresUnavailable(RuntimeError):
    """The server binaries are missing or the server cannot run here; the message says why."""


def find_bindir() -> str:
    """The folder holding initdb, pg_ctl and postgres; raises PostgresUnavailable if none."""
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                              check=False)
        if done.returncode == 0:
            candidates.append(done.stdout.strip())
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(os.path.dirname(os.path.realpath(initdb)))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                         key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
                         reverse=True)
    for folder in candidates:
        if all(os.access(os.path.join(folder, t), os.X_OK) for t in _TOOLS):
            return folder
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found via pg_config, PATH "
        "or /usr/lib/postgresql/*/bin; install Debian's `postgresql` package to run alternative (b)")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> str | None:
    """The unprivileged user to run the server as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    if shutil.which("runuser") is None:
        raise PostgresUnavailable("running as root and `runuser` is missing: PostgreSQL "
                                  "refuses to run as root; run the benchmark as another user")
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise PostgresUnavailable("running as root with no `postgres` or `nobody` user to run "
                              "PostgreSQL as (it refuses to run as root)")


@dataclass
class Server:
    bindir: str
    folder: str
    port: int
    user: str | None
    version: str

    @property
    def data(self) -> str:
        return os.path.join(self.folder, "data")

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=bench dbname=postgres"

    def command(self, tool: str, *args: str) -> list[str]:
        argv = [os.path.join(self.bindir, tool), *args]
        return ["runuser", "-u", self.user, "--", *argv] if self.user else argv


def _check(argv: list[str], what: str, log: str | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
    if done.returncode != 0:
        tail = ""
        if log and os.path.exists(log):
            with open(log, encoding="utf-8", errors="replace") as fh:
                tail = fh.read()[-1500:]
        raise PostgresUnavailable(f"{what} failed ({done.returncode}): "
                                  f"{(done.stderr or done.stdout).strip()[-1500:]} {tail}".strip())


@contextmanager
def server() -> Iterator[Server]:
    """A throw-away PostgreSQL server on 127.0.0.1; stopped and deleted on exit, also on error."""
    bindir = find_bindir()
    user = _run_as()
    folder = tempfile.mkdtemp(prefix="xray-bench-pg-")
    started = False
    srv: Server | None = None
    try:
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        version = subprocess.run([os.path.join(bindir, "postgres"), "--version"],
                                 capture_output=True, text=True, check=False).stdout.strip()
        srv = Server(bindir, folder, _free_port(), user, version)
        _check(srv.command("initdb", "-D", srv.data, "-U", "bench", "--auth=trust",
                           "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"),
               "initdb")
        log = os.path.join(folder, "server.log")
        for attempt in range(3):
            options = " ".join([f"-c listen_addresses=127.0.0.1 -p {srv.port} -k {folder}",
                                *(f"-c {k}={v}" for k, v in SETTINGS.items())])
            argv = srv.command("pg_ctl", "-D", srv.data, "-o", options, "-l", log, "-w",
                               "-t", "120", "start")
            done = subprocess.run(argv, capture_output=True, text=True, check=False,
                                  timeout=300)
            if done.returncode == 0:
                started = True
                break
            if attempt == 2:
                _check(argv, "pg_ctl start", log)
            srv.port = _free_port()  # the port was taken between probe and start: retry
        yield srv
    finally:
        if started and srv is not None:
            subprocess.run(srv.command("pg_ctl", "-D", srv.data, "-m", "fast", "-w", "stop"),
                           capture_output=True, check=False, timeout=300)
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class LoadInfo:
    copy_s: float
    index_s: float
    bytes_tables: int  # heap + TOAST
    bytes_indexes: int
    bytes_total: int  # pg_total_relation_size of both tables
    database_bytes: int


class PostgresEngine:
    name = "PostgreSQL JSONB"

    def __init__(self, srv: Server) -> None:
        import psycopg

        self.srv = srv
        self.con: Any = psycopg.connect(srv.dsn, autocommit=True)

    def load(self, files: DocFiles) -> LoadInfo:
        con = self.con
        con.execute("create table pipelines (doc jsonb not null)")
        con.execute("create table stages (doc jsonb not null)")
        t0 = time.perf_counter()
        for table, paths in (("pipelines", files.pipelines), ("stages", files.stages)):
            # CSV with quote/delimiter bytes that JSON text never holds: each line is one value,
            # backslashes untouched (text format would treat them as escapes).
            with con.cursor() as cur, cur.copy(
                    f"copy {table} (doc) from stdin "
                    "with (format csv, quote e'\\x01', delimiter e'\\x02')") as copy:
                for block in iter_lines(paths):
                    copy.write(block)
        t1 = time.perf_counter()
        for statement in INDEXES:
            con.execute(statement)
        con.execute("analyze pipelines")
        con.execute("analyze stages")
        t2 = time.perf_counter()
        tables = indexes = total = 0
        for table in ("pipelines", "stages"):
            row = con.execute("select pg_table_size(%s), pg_indexes_size(%s), "
                              "pg_total_relation_size(%s)", (table, table, table)).fetchone()
            tables, indexes, total = tables + row[0], indexes + row[1], total + row[2]
        database = con.execute("select pg_database_size(current_database())").fetchone()[0]
        return LoadInfo(round(t1 - t0, 2), round(t2 - t1, 2), tables, indexes, total, database)

    def drop_btree_indexes(self) -> dict[str, Any]:
        """Leave only the GIN indexes (the issue's (b)) and re-ANALYZE, so the planner costs the
        GIN-only setup; returns the indexes dropped and those left."""
        for name in BTREE_INDEXES:
            self.con.execute(f"drop index if exists {name}")
        self.con.execute("analyze pipelines")
        self.con.execute("analyze stages")
        left = [row[0] for row in self.con.execute(
            "select indexname from pg_indexes where tablename in ('pipelines', 'stages') "
            "order by 1").fetchall()]
        return {"dropped": list(BTREE_INDEXES), "indexes_left": left}

    def explain_gin_only(self) -> list[str]:
        """PostgreSQL's plan for `GIN_ONLY_Q1` (EXPLAIN, not run), kept with the figure."""
        return [str(row[0]) for row in self.con.execute("explain " + _GIN_ONLY_SQL).fetchall()]

    def counts(self) -> dict[str, int]:
        runs = self.con.execute("select count(*) from pipelines").fetchone()[0]
        stages, candidates = self.con.execute(
            "select count(*), sum(jsonb_array_length(doc->'candidates')) from stages").fetchone()
        return {"runs": int(runs), "stages": int(stages), "candidates": int(candidates or 0)}

    def answer(self, key: str, p: Params) -> list[Row]:
        con = self.con
        if key == "1":
            rows = con.execute("""
                select s.doc->>'pipelineId', s.doc->>'name', p.doc->>'label',
                       (s.doc->'metadata'->>'failRatio')::float8
                from stages s join pipelines p on p.doc->>'id' = s.doc->>'pipelineId'
                where s.doc->>'type' = 'filtering'
                  and (s.doc->'metadata'->>'failRatio')::float8 > 0.9""").fetchall()
            return sorted(rows)
        if key == JSONPATH_Q1:
            rows = con.execute("""
                select s.doc->>'pipelineId', s.doc->>'name', p.doc->>'label',
                       (s.doc->'metadata'->>'failRatio')::float8
                from stages s join pipelines p on p.doc->>'id' = s.doc->>'pipelineId'
                where s.doc @? '$ ? (@.type == "filtering" && @.metadata.failRatio > 0.9)'
                """).fetchall()
            return sorted(rows)
        if key == GIN_ONLY_Q1:
            return sorted(con.execute(_GIN_ONLY_SQL).fetchall())
        if key == "3":
            rows = con.execute("""
                select label, stage, reason, dropped from (
                  select p.doc->>'label' as label, s.doc->>'name' as stage, r.key as reason,
                         sum(r.value::bigint) as dropped,
                         row_number() over (partition by p.doc->>'label', s.doc->>'name'
                                            order by sum(r.value::bigint) desc, r.key) as rank
                  from stages s
                  join pipelines p on p.doc->>'id' = s.doc->>'pipelineId'
                  cross join lateral jsonb_each_text(s.doc->'metadata'->'reasonCounts') r
                  where s.doc->>'type' = 'filtering' and s.doc->>'startedAt' >= %s
                  group by 1, 2, 3) ranked
                where rank <= 3
                order by label, stage, dropped desc, reason""", (p.since_text,)).fetchall()
            return [(a, b, c, int(d)) for a, b, c, d in rows]
        if key == "4":
            return con.execute("""
                select (s.doc->>'seq')::int, s.doc->>'name', (c->>'inPosition')::int,
                       (c->>'outPosition')::int, (c->>'passed')::boolean, c->>'reasonLabel',
                       (c->>'score')::float8
                from stages s cross join lateral jsonb_array_elements(s.doc->'candidates') c
                where s.doc->>'pipelineId' = %s and c->>'id' = %s
                order by 1""", (p.run_id, p.candidate_id)).fetchall()
        if key == "7":
            return con.execute("""
                select distinct on (label) label, name, p90_ms from (
                  select p.doc->>'label' as label, s.doc->>'name' as name,
                         percentile_cont(0.9) within group
                           (order by (s.doc->>'duration')::float8) as p90_ms
                  from stages s join pipelines p on p.doc->>'id' = s.doc->>'pipelineId'
                  group by 1, 2) per_stage
                order by label, p90_ms desc""").fetchall()
        raise KeyError(key)

    def close(self) -> None:
        self.con.close()
