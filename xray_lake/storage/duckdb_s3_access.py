"""How a DuckDB connection reads an `s3://` lake: the httpfs extension if it loads, else fsspec.

httpfs is DuckDB's own S3 client, but it is an extension that DuckDB downloads on first use,
which many machines cannot do. The fallback registers pyarrow's S3 client, wrapped as an fsspec
filesystem, with the connection (`register_filesystem`): DuckDB then lists and reads `s3://`
paths through it (faster than through s3fs: benchmarks/RESULTS.md). Both see the same globs
and file lists, so partition pruning works the same way: files of other labels/dates are
never opened.
"""

from __future__ import annotations

from typing import Any

import duckdb

from xray_lake.config import get_settings
from xray_lake.errors import ConfigError
from xray_lake.storage.s3_clients import S3Config, duckdb_fs, is_remote

HTTPFS = "httpfs"
FSSPEC = "fsspec"


def attach_filesystem(con: Any, root: str) -> str | None:
    """Make `s3://` paths of `root` readable by `con`; returns "httpfs", "fsspec" or None (local).

    `storage_options["duckdb_access"]` chooses: `auto` (default: httpfs if `LOAD httpfs`
    works, without downloading anything), `httpfs` (fail if it does not load) or `fsspec`.
    """
    if not is_remote(root):
        return None
    config = S3Config.resolve(get_settings().storage_options)
    if config.duckdb_access in ("auto", HTTPFS):
        try:
            con.execute("LOAD httpfs")
            con.execute(_secret_sql(config))
            return HTTPFS
        except duckdb.Error as exc:
            if config.duckdb_access == HTTPFS:
                raise ConfigError(
                    f"storage option duckdb_access=httpfs, but DuckDB's httpfs extension does "
                    f"not load: {str(exc).strip().splitlines()[0]}. Install it (INSTALL httpfs, "
                    "or the duckdb-extension-httpfs package matching your duckdb) or use "
                    "duckdb_access=fsspec"
                ) from None
    # Never let DuckDB try to download httpfs in the middle of a query.
    con.execute("SET autoinstall_known_extensions = false")
    con.register_filesystem(duckdb_fs(config))
    return FSSPEC


def _secret_sql(config: S3Config) -> str:
    """A DuckDB S3 secret with the same endpoint, region and credentials as the writers."""
    fields: list[str] = ["TYPE s3"]
    if config.access_key_id and not config.anonymous:
        fields += [f"KEY_ID {_quote(config.access_key_id)}",
                   f"SECRET {_quote(config.secret_access_key or '')}"]
        if config.session_token:
            fields.append(f"SESSION_TOKEN {_quote(config.session_token)}")
    elif not config.anonymous:  # ~/.aws, instance roles: needs DuckDB's aws extension too
        fields.append("PROVIDER credential_chain")
    endpoint = config.endpoint()
    if endpoint is not None:
        scheme, host = endpoint
        fields += [f"ENDPOINT {_quote(host)}", "URL_STYLE 'path'",
                   f"USE_SSL {'true' if scheme == 'https' else 'false'}"]
    region = config.region or ("us-east-1" if endpoint is not None else None)
    if region:
        fields.append(f"REGION {_quote(region)}")
    return f"CREATE OR REPLACE SECRET xray_lake_s3 ({', '.join(fields)})"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
