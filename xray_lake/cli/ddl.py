"""`xray-lake ddl`: print the table definitions that let Spark, Trino, Athena or DuckDB read the lake."""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from typing import Annotated

import typer

from xray_lake.cli import resolve_root, stderr
from xray_lake.cli.help import Command
from xray_lake.cli.output import RootOption

HELP = (
    "Print the table definitions of runs, stages and candidates for another engine, derived "
    "from xray-lake's own schemas: CREATE TABLE for Spark, CREATE TABLE ... WITH "
    "(external_location ...) for Trino's Hive connector, CREATE EXTERNAL TABLE for Athena, "
    "CREATE VIEW over read_parquet for DuckDB.\n\n"
    "The partition columns label and date are declared as strings. Tables point at --root: a "
    "local folder (Spark: file://, DuckDB: a path) or s3://bucket/prefix (Trino and Athena "
    "need object storage; Spark gets s3a://). Spark, Trino and Athena see a new label/date "
    "folder only after the partition statement printed with each table runs again (daily, "
    "from cron); DuckDB views always see every file. See docs/querying-at-scale.md.\n\n"
    "Examples:\n\n"
    "  xray-lake ddl --engine duckdb --root /srv/lake > views.sql\n"
    "  xray-lake ddl --engine spark --root /srv/lake | spark-sql -f /dev/stdin\n"
    "  xray-lake ddl --engine trino --root s3://bucket/lake --schema xray\n"
    "  xray-lake ddl --engine athena --root s3://bucket/lake"
)


class EngineName(StrEnum):
    """The engines `ddl` writes for."""

    spark = "spark"
    trino = "trino"
    athena = "athena"
    duckdb = "duckdb"


def ddl_command(
    engine: Annotated[EngineName, typer.Option(
        "--engine", "-e", case_sensitive=False, show_default=False,
        help="spark, trino, athena or duckdb.")],
    schema: Annotated[str | None, typer.Option(
        "--schema", metavar="NAME", show_default="xray for trino and athena, none otherwise",
        help="Database (Spark, Athena) or schema (Trino, DuckDB) that holds the tables; "
             "'' for none (not for Trino).")] = None,
    root: RootOption = None,
) -> None:
    from xray_lake.query import ddl

    lake_root = resolve_root(root)
    name = ddl.check_engine(engine.value)
    if schema:
        try:
            ddl.check_schema_name(schema)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--schema'") from None
    try:
        text = ddl.script(name, lake_root, schema)
    except ValueError as exc:
        hint = "'--schema'" if "--schema" in str(exc) else "'--root'"
        raise typer.BadParameter(str(exc), param_hint=hint) from None
    if "://" not in lake_root and not os.path.isdir(lake_root):
        stderr().print(f"xray-lake: warning: no lake at {lake_root} yet: the tables stay empty "
                       "until it is written", markup=False, soft_wrap=True)
    sys.stdout.write(text)
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    """Add `ddl` to the app."""
    app.command("ddl", help=HELP, cls=Command,
                no_args_is_help=True)(ddl_command)
