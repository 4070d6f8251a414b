"""`xr.Lake`: a DuckDB connection with the lake's views, answering in polars or Arrow."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import duckdb
import polars as pl
import pyarrow as pa

from xray_lake.config import get_settings
from xray_lake.errors import LakeReadError, QueryError
from xray_lake.query.cache import DEFAULT_MAX_BYTES, LOAD_AFTER, TableCache
from xray_lake.query.readonly import HINT, check_statement, lock_down
from xray_lake.storage.catalog import VANISHED, Views, attach_views, fields_tags
from xray_lake.storage.compaction.protocol import compaction_epoch, marker_names, wait_until_idle
from xray_lake.storage.duckdb_s3_access import attach_filesystem
from xray_lake.storage.s3_clients import is_remote

if TYPE_CHECKING:  # the front ends load on first use; their types are named for the checker
    from xray_lake.query.builder import Query
    from xray_lake.query.journey import Journey

_FILE_IN_ERROR = re.compile(r"""(?:file|File)\s*['"]?([^'"\s]+\.parquet)""")
# A query whose files a compaction deleted under it is re-run on fresh views this many times,
# each time after waiting (up to 50, 200, 800 ms) for the merges under way to finish.
_RETRIES = 3
_BACKOFF_S = 0.05


class Lake:
    """A lake opened for reading. Cheap to create; views see files published after creation.

    `cache_bytes`: memory a long-lived `Lake` of a local root may use to hold the `runs` and
    `stages` tables (`xray_lake.query.cache`: copied by a table's `cache_after`-th query,
    brought up to date with its files before every query, never stale); 0 turns it off.

    `read_only` (default): `sql()` runs exactly one query (SELECT ...) per call, and the
    connection reads files under the root and nothing else: no other file or URL, no COPY,
    ATTACH, INSTALL/LOAD, SET (`xray_lake.query.readonly`, docs/security.md). `False` gives
    the full DuckDB, for trusted SQL only.
    """

    def __init__(self, root: str | None = None, *, threads: int | None = None,
                 cache_bytes: int = DEFAULT_MAX_BYTES, cache_after: int = LOAD_AFTER,
                 read_only: bool = True) -> None:
        self.root = root or get_settings().root
        self.read_only = read_only
        self.connection = duckdb.connect(":memory:")
        if threads:
            self.connection.execute(f"SET threads = {int(threads)}")
        self.connection.execute("SET TimeZone = 'UTC'")
        # Lake files are immutable (a name is never reused), so footers can be cached across
        # queries: a warm query then pays less per file it scans (benchmarks/RESULTS.md).
        self.connection.execute("SET parquet_metadata_cache = true")
        # s3:// roots: "httpfs" or "fsspec", how DuckDB reaches the store (None: local)
        self.s3_access = attach_filesystem(self.connection, self.root)
        if read_only:
            lock_down(self.connection, self.root)
        self._views: Views = attach_views(self.connection, self.root)
        self._cache = (TableCache(self.connection, self.root, cache_bytes, cache_after)
                       if cache_bytes > 0 and not is_remote(self.root) else None)

    def refresh(self) -> None:
        """Re-create the views (needed only when a table had no file when the lake was opened).

        They read the files again (globs) until the next query points them at the copies."""
        self._attach()

    def _attach(self, explicit: bool = False) -> Views:
        self._views = attach_views(self.connection, self.root, explicit=explicit)
        if self._cache is not None:
            self._cache.views_rebuilt()
        return self._views

    def _prepare(self, explicit: bool) -> Views:
        """Views fit for the next query: kept while no compaction runs, else rebuilt.

        While markers exist the views are rebuilt for every query (one listing of the lake),
        so they also see files published since the last one.
        """
        epoch = compaction_epoch(self.root)
        views = self._views
        if explicit or views.explicit or marker_names(self.root) or not all(
                views.present.values()) or not fields_tags(self.root) <= views.tags:
            # (a new set of promoted fields: its files are in no glob of the views yet)
            return self._attach(explicit)
        return dataclasses.replace(views, explicit=False, epoch=epoch)

    def _fetch(self, sql: str, params: Any) -> pa.Table:
        """Run a query; re-run it when a concurrent compaction may have changed its files.

        Only the views built here are protected: SQL run on `self.connection` directly reads
        whatever the views held when last rebuilt.
        """
        explicit = False
        vanished = 0
        while True:
            views = self._prepare(explicit)
            try:
                result = self._run(sql, params, cached=not views.explicit)
            except duckdb.IOException as exc:
                if not any(text in str(exc) for text in VANISHED):
                    raise _read_error(exc) from None
                if vanished == _RETRIES:
                    raise LakeReadError(
                        f"files of the lake at {self.root} were deleted under the query "
                        f"{vanished + 1} times in a row ({_first_line(exc)}): compaction is "
                        "merging faster than this query runs; retry it, or compact less often"
                    ) from None
                vanished += 1  # a file was merged away under the query: list them again once
                explicit = True  # the merges under way are done (or 50, 200, 800 ms passed)
                wait_until_idle(self.root, _BACKOFF_S * 4 ** (vanished - 1))
                continue
            if views.explicit or compaction_epoch(self.root) == views.epoch:
                return result
            explicit = True  # a merge became visible while the globs were read: maybe twice

    def _run(self, sql: str, params: Any, cached: bool = False) -> pa.Table:
        """One query; DuckDB's IOException is left to `_fetch` (it may mean a vanished file).

        `cached`: the views are plain globs, so the in-memory copies may answer (they are
        brought up to date first, in the same state the globs would be read)."""
        try:
            if cached and self._cache is not None:
                self._cache.prepare(sql)
            return self.connection.sql(sql, params=params).to_arrow_table()
        except duckdb.PermissionException as exc:
            raise QueryError(f"query refused: {_first_line(exc)} {HINT}") from None
        except duckdb.InterruptException:
            raise QueryError("query interrupted") from None
        except duckdb.InvalidInputException as exc:
            if ".parquet" in str(exc):
                raise _read_error(exc) from None
            raise QueryError(f"query failed: {_first_line(exc)}") from None
        except (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException,
                duckdb.ConversionException) as exc:
            raise QueryError(f"query failed: {_first_line(exc)}") from None
        except duckdb.Error as exc:
            if type(exc) is not duckdb.Error:
                raise
            # An error of a Python filesystem (s3:// roots): DuckDB passes its traceback on.
            lines = str(exc).strip().splitlines()
            raise duckdb.IOException(lines[-1] if lines else type(exc).__name__) from None

    def sql(self, sql: str, params: Any = None) -> pl.DataFrame:
        """Run SQL over the views `runs`, `stages`, `candidates`; values bind as `?` or `$name`.

        A read-only lake (the default) runs one query per call and refuses anything else
        (COPY, ATTACH, SET, several statements ...) with a `QueryError`."""
        result = pl.from_arrow(self.sql_arrow(sql, params))
        assert isinstance(result, pl.DataFrame)
        return result

    def sql_arrow(self, sql: str, params: Any = None) -> pa.Table:
        """`sql()`, answering in Arrow."""
        if self.read_only:
            check_statement(self.connection, sql)
        return self._fetch(sql, params)

    def interrupt(self) -> None:
        """Stop the query running on this lake (from another thread or a signal handler);
        it raises `QueryError` in the thread that ran it."""
        self.connection.interrupt()

    # --- front ends (each lives in its own module) ---------------------------------------

    def find(self, query: dict[str, Any], *, per: str = "stage",
             columns: Sequence[str] | None = None) -> pl.DataFrame:
        """The original design's JSON query language; one row per matching stage (or run).

        Parameters
        ----------
        query
            `{"stage": {...}, "run": {...}, "candidate": {...}}`, each a column test such
            as `{"fail_ratio": {"$gt": 0.9}}` (docs/questions.md lists the operators).
        per
            "stage" (one row per matching stage) or "run" (one row per matching run).
        columns
            Only the named result columns (`["run_id", "name", "fail_ratio", "run_status"]`):
            the fast form, reading nothing else from the lake. "all" gives every column.

        Examples
        --------
        `lake` holds run "r-1" of the `in_stock` stage of `xr.filtering_stage`'s example:

        >>> lake.find({"stage": {"fail_ratio": {"$gt": 0.4}}},
        ...           columns=["run_id", "name", "fail_ratio"]).rows()
        [('r-1', 'in_stock', 0.5)]
        """
        from xray_lake.query.jsonql import find

        return find(self, query, per=per, columns=columns)

    def query(self) -> Query:
        """A typed query builder: immutable, checked as it is built, compiled to DuckDB SQL.

        Examples
        --------
        `lake` holds run "r-1" of the `in_stock` stage of `xr.filtering_stage`'s example:

        >>> from xray_lake.query import stage
        >>> q = lake.query().where(stage.fail_ratio > 0.4).select(stage.name, stage.fail_ratio)
        >>> q.to_polars().rows()
        [('in_stock', 0.5)]
        """
        from xray_lake.query.builder import Query

        return Query(self)

    def journey(self, run_id: str, candidate_id: str) -> Journey:
        """One candidate's path through a run's stages, with a one-line verdict.

        Parameters
        ----------
        run_id, candidate_id
            The run, and the candidate's id as its stages recorded it.

        Examples
        --------
        `lake` holds run "r-1" of the `in_stock` stage of `xr.filtering_stage`'s example:

        >>> lake.journey("r-1", "b").verdict
        'dropped at in_stock: sold out'
        """
        from xray_lake.query.journey import journey

        return journey(self, run_id, candidate_id)

    def funnel(self, run_id: str) -> pl.DataFrame:
        """Per stage of a run: n_in -> n_out, fail ratio, top reasons, duration."""
        from xray_lake.query.journey import funnel

        return funnel(self, run_id)

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Lake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _read_error(exc: BaseException) -> LakeReadError:
    match = _FILE_IN_ERROR.search(str(exc))
    where = f" {match.group(1)}" if match else ""
    return LakeReadError(
        f"cannot read lake file{where}: {_first_line(exc)}. "
        "Run `xray-lake doctor --fix` to move unreadable files to _quarantine/."
    )
