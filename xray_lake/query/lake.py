"""`xr.Lake`: a DuckDB connection with the lake's views, answering in polars or Arrow."""

from __future__ import annotations

import re
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from xray_lake.config import get_settings
from xray_lake.errors import LakeReadError, QueryError
from xray_lake.storage.catalog import attach

_FILE_IN_ERROR = re.compile(r"""(?:file|File)\s*['"]?([^'"\s]+\.parquet)""")


class Lake:
    """A lake opened for reading. Cheap to create; views see files published after creation."""

    def __init__(self, root: str | None = None, *, threads: int | None = None) -> None:
        self.root = root or get_settings().root
        self.connection = duckdb.connect(":memory:")
        if threads:
            self.connection.execute(f"SET threads = {int(threads)}")
        self.connection.execute("SET TimeZone = 'UTC'")
        self._present = attach(self.connection, self.root)

    def refresh(self) -> None:
        """Re-create the views (needed only when a table had no file when the lake was opened)."""
        self._present = attach(self.connection, self.root)

    def _fetch(self, sql: str, params: Any) -> pa.Table:
        if not all(self._present.values()):
            self.refresh()
        try:
            return self.connection.sql(sql, params=params).to_arrow_table()
        except duckdb.IOException as exc:
            raise _read_error(exc) from None
        except duckdb.InvalidInputException as exc:
            if ".parquet" in str(exc):
                raise _read_error(exc) from None
            raise QueryError(f"query failed: {_first_line(exc)}") from None
        except (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException,
                duckdb.ConversionException) as exc:
            raise QueryError(f"query failed: {_first_line(exc)}") from None

    def sql(self, sql: str, params: Any = None) -> pl.DataFrame:
        """Run SQL over the views `runs`, `stages`, `candidates`; values bind as `?` or `$name`."""
        result = pl.from_arrow(self._fetch(sql, params))
        assert isinstance(result, pl.DataFrame)
        return result

    def sql_arrow(self, sql: str, params: Any = None) -> pa.Table:
        return self._fetch(sql, params)

    # --- front ends (each lives in its own module) ---------------------------------------

    def find(self, query: dict[str, Any], *, per: str = "stage") -> pl.DataFrame:
        """The original design's JSON query language; one row per matching stage (or run)."""
        from xray_lake.query.jsonql import find

        return find(self, query, per=per)

    def query(self) -> Any:
        """A typed query builder: `lake.query().where(stage.fail_ratio > 0.9).to_polars()`."""
        from xray_lake.query.builder import Query

        return Query(self)

    def journey(self, run_id: str, candidate_id: str) -> Any:
        """One candidate's path through a run's stages, with a one-line verdict."""
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
