"""Shared options of the commands (`--root`, output format and file, time windows) and the
writing of their results."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from xray_lake.cli import resolve_root, stderr, stdout
from xray_lake.display import ms_figure, scalar_text
from xray_lake.errors import XrayLakeError

if TYPE_CHECKING:  # loaded by the functions that use them (see the package docstring)
    import polars as pl
    from rich.console import Console, RenderableType

    from xray_lake.query.lake import Lake

RootOption = Annotated[
    str | None,
    typer.Option(
        "--root",
        envvar="XRAY_LAKE_ROOT",
        metavar="PATH",
        show_default="data/lake",
        help="Lake root: a folder or s3://bucket/prefix (see 'xray-lake help storage').",
    ),
]


StorageOption = Annotated[
    list[str] | None,
    typer.Option(
        "--storage-option",
        metavar="KEY=VALUE",
        hidden=True,  # described once, by `xray-lake help storage`
        help="For s3:// roots, repeatable; keys in 'xray-lake help storage'.",
    ),
]

MAX_TABLE_ROWS = 1000  # a terminal table past this is unreadable anyway; csv/json have no cap
MAX_TABLE_COLUMNS = 14
MAX_CELL_CHARS = 60
OFFLINE_WIDTH = 200  # table width when stdout is not a terminal


class Format(StrEnum):
    """Output formats; `table` is for people, the others for programs."""

    table = "table"
    csv = "csv"
    json = "json"
    ndjson = "ndjson"
    parquet = "parquet"


FormatOption = Annotated[
    Format,
    typer.Option("--format", "-f", case_sensitive=False,
                 help="table (default, for people), csv, json (one array), ndjson (a row a "
                      "line) or parquet (needs --output)."),
]
OutputOption = Annotated[
    Path | None,
    typer.Option("--output", "-o", metavar="FILE", dir_okay=False,
                 help="Write to FILE instead of stdout."),
]


def check_output(fmt: Format, output: Path | None) -> None:
    """Fail before any work on a combination that cannot be written (parquet to a terminal)."""
    if fmt is Format.parquet and output is None:
        raise typer.BadParameter("parquet is a binary format: add --output FILE",
                                 param_hint="'--format'")


def open_lake(root: str | None, storage_options: list[str] | None = None, *,
              read_only: bool = True) -> Lake:
    """The lake at `--root`; a local root that does not exist is an error, not an empty lake.

    `read_only=False` gives the full DuckDB (`query --unsafe-sql`)."""
    lake_root = resolve_root(root, storage_options)
    if "://" not in lake_root and not os.path.isdir(lake_root):
        raise XrayLakeError(f"no lake at {lake_root}: the folder does not exist (pass --root "
                            "or set XRAY_LAKE_ROOT; `xray-lake demo` creates one)")
    from xray_lake.query.lake import Lake

    return Lake(lake_root, read_only=read_only)


def emit(frame: pl.DataFrame, fmt: Format, output: Path | None, *,
         table: RenderableType | None = None, hide: Sequence[str] = ()) -> None:
    """Write `frame` as `fmt` to `output` or stdout.

    `table` replaces the generic rich table; `hide` names columns the generic table may
    leave out when the frame is too wide for a terminal.
    """
    check_output(fmt, output)
    if fmt is Format.parquet:
        assert output is not None
        frame.write_parquet(output)
        _wrote(frame, output)
        return
    if fmt is Format.table:
        if output is None:
            _print_table(_table_console(), frame, table, hide)
        else:
            from rich.console import Console

            with output.open("w", encoding="utf-8") as f:
                console = Console(file=f, width=OFFLINE_WIDTH, highlight=False, no_color=True)
                _print_table(console, frame, table, hide)
            _wrote(frame, output)
        return
    if fmt is Format.csv:
        text = _flat(frame).write_csv()
    elif fmt is Format.json:
        text = frame.write_json() + "\n"
    else:
        text = frame.write_ndjson()
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        output.write_text(text, encoding="utf-8")
        _wrote(frame, output)


def _table_console() -> Console:
    """stdout; when it is a pipe or file (80 columns by default), wide enough not to wrap."""
    console = stdout()
    if console.is_terminal or os.environ.get("COLUMNS"):
        return console
    from rich.console import Console

    return Console(highlight=False, width=OFFLINE_WIDTH)


def _print_table(console: Console, frame: pl.DataFrame, table: RenderableType | None,
                 hide: Sequence[str]) -> None:
    if table is not None:
        console.print(table)
        return
    lines, shown = frame_lines(frame, columns=table_columns(frame, hide), width=console.width)
    if console.is_terminal:
        from rich.text import Text

        console.print(Text(lines[0], style="bold"), soft_wrap=True)
        lines = lines[1:]
    console.file.write("".join(f"{text}\n" for text in lines))
    console.file.flush()
    _note_cut(frame, shown)
    if frame.is_empty():
        stderr().print("(no rows)", markup=False)


def _note_cut(frame: pl.DataFrame, shown: list[str]) -> None:
    cut = []
    if frame.height > MAX_TABLE_ROWS:
        cut.append(f"{MAX_TABLE_ROWS} of {frame.height} rows")
    if len(shown) < frame.width:
        cut.append(f"{len(shown)} of {frame.width} columns")
    if cut:
        stderr().print(f"(the table shows {' and '.join(cut)}; --format csv or json has all)",
                       markup=False, soft_wrap=True)


def _wrote(frame: pl.DataFrame, output: Path) -> None:
    stderr().print(f"wrote {frame.height} rows to {output}", markup=False, soft_wrap=True)


def _flat(frame: pl.DataFrame) -> pl.DataFrame:
    """Nested columns (maps, lists, structs) as JSON text, which CSV can hold."""
    import orjson
    import polars as pl

    nested = [name for name, dtype in frame.schema.items() if dtype.is_nested()
              or isinstance(dtype, getattr(pl, "Map", ()))]
    if not nested:
        return frame
    return frame.with_columns(
        pl.Series(name, [None if v is None else orjson.dumps(v, default=str).decode()
                         for v in frame[name].to_list()], dtype=pl.String())
        for name in nested
    )


def cell(value: Any) -> str:
    """One value as table text: short floats, seconds-precision times, '' for null; ints
    with thousands separators from 10,000; maps as `key value, ...`, lists as JSON."""
    text = scalar_text(value)
    if text is not None:
        return text
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, dict):  # maps such as reason_counts: `price_too_high 412, ...`
        return ", ".join(f"{k} {cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        import orjson

        return orjson.dumps(value, default=str).decode()
    return str(value)


def ms_cell(ms: float | None) -> str:
    """A duration in ms for a column (display.ms_figure); '' for null."""
    return "" if ms is None else ms_figure(ms)


def table_columns(frame: pl.DataFrame, hide: Sequence[str] = ()) -> list[str]:
    """The columns worth a terminal table; all of them unless there are too many.

    Past MAX_TABLE_COLUMNS, drops the `hide` columns, JSON blobs and all-null columns, then
    keeps the first MAX_TABLE_COLUMNS (csv/json always have every column).
    """
    names = list(frame.columns)
    if len(names) <= MAX_TABLE_COLUMNS:
        return names
    blobs = {"payload", "attributes", "run_attributes", *hide}
    names = [n for n in names if n not in blobs and not n.endswith("_json")]
    if frame.height:
        names = [n for n in names if frame[n].null_count() < frame.height]
    front = [n for n in ("run_id", "label") if n in names]
    return [*front, *(n for n in names if n not in front)][:MAX_TABLE_COLUMNS]


def frame_lines(frame: pl.DataFrame, *, columns: Sequence[str] | None = None,
                width: int | None = None) -> tuple[list[str], list[str]]:
    """A plain table of a frame as text lines (header, rule, rows), and the columns it shows.

    The look of a rich table without edges (`name ┃ name`, a `━━╇━━` rule, `│` between
    cells), drawn here because rich lays out every cell of every row: 1,000 rows took
    seconds. Numbers are right-aligned, long text is cut, at most MAX_TABLE_ROWS rows. Given
    a `width`, columns are kept from the left while they fit (at least two), so a narrow
    terminal shows fewer whole columns rather than many unreadable slivers.
    """
    from rich.cells import cell_len

    names = list(columns or frame.columns)
    texts = [ms_cell if name.endswith("_ms") and frame.schema[name].is_float() else cell
             for name in names]
    rows = [[_cut(text(v)) for text, v in zip(texts, row, strict=True)]
            for row in frame.select(names).head(MAX_TABLE_ROWS).iter_rows()]
    widths = [max([cell_len(name), *(cell_len(r[i]) for r in rows)])
              for i, name in enumerate(names)]
    keep = len(names)
    if width is not None:
        used, keep = 0, 0
        for w in widths:
            if used + w + 3 > width and keep >= 2:
                break
            used, keep = used + w + 3, keep + 1
    right = [frame.schema[name].is_numeric() for name in names[:keep]]

    def line(cells: Sequence[str], sep: str) -> str:
        padded = [" " * (w - cell_len(c)) + c if r else c + " " * (w - cell_len(c))
                  for c, w, r in zip(cells, widths, right, strict=False)]
        return sep.join(padded)

    rule = "╇".join("━" * (w + (1 if i in (0, keep - 1) else 2)) if keep > 1 else "━" * w
                    for i, w in enumerate(widths[:keep]))
    return ([line(names[:keep], " ┃ "), rule, *(line(r[:keep], " │ ") for r in rows)],
            names[:keep])


def human_bytes(n: int) -> str:
    """`512 B`, `3.4 KB`, `12.0 MB`, `1.5 GB` (binary units)."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _cut(text: str) -> str:
    return text if len(text) <= MAX_CELL_CHARS else text[:MAX_CELL_CHARS - 1] + "…"


# --- time windows ------------------------------------------------------------------------

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
WHEN_HELP = "a date (2024-05-01), a UTC time (2024-05-01T12:00) or an age (30m, 12h, 7d, 2w)"


def parse_when(text: str, *, end: bool = False, now: datetime | None = None) -> datetime:
    """`7d`, `12h`, `2024-05-01` or an ISO time as an aware UTC datetime.

    With `end=True` a bare date means the end of that day, so `--until 2024-05-01`
    includes the runs of May 1st. A time past the calendar (`1000000000d`, `9999-12-31` as
    an end) is a usage error, like any other bad value.
    """
    try:
        return _parse_when(text, end, now)
    except OverflowError:
        raise typer.BadParameter(
            f"{text!r} is out of range: use a date between 0001-01-01 and 9999-12-30 or an "
            "age that stays after year 1 (30m, 12h, 7d, 2w)") from None


def _parse_when(text: str, end: bool, now: datetime | None) -> datetime:
    now = now or datetime.now(UTC)
    if match := _AGE.match(text):
        amount, unit = float(match.group(1)), match.group(2).lower()
        return now - timedelta(**{_UNITS[unit]: amount})
    value = text.strip()
    if value.lower() in {"now", "today"}:
        return now if value.lower() == "now" else now.replace(hour=0, minute=0, second=0,
                                                               microsecond=0)
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            day = datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
            return day + timedelta(days=1) if end else day
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not {WHEN_HELP}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def in_list(column: str, values: Sequence[object]) -> str:
    """`column in (?, ?, ...)`: one placeholder per value (the values are bound, never pasted)."""
    return f"{column} in ({', '.join('?' for _ in values)})"


def window(since: str | None, until: str | None) -> tuple[list[str], list[Any]]:
    """SQL conditions (and their parameters) for `since <= started_at < until`.

    Each bound is written twice: on the `date` partition (a string, so DuckDB skips the
    folders outside the window) and on `started_at` (exact).
    """
    clauses: list[str] = []
    params: list[Any] = []
    if since and since.strip().lower() != "all":
        start = parse_when(since)
        clauses += ["date >= ?", "started_at >= ?"]
        params += [start.date().isoformat(), start]
    if until:
        stop = parse_when(until, end=True)
        if since and since.strip().lower() != "all" and stop <= parse_when(since):
            raise typer.BadParameter(f"{until} is not after --since {since}",
                                     param_hint="'--until'")
        clauses += ["date <= ?", "started_at < ?"]
        params += [_last_day(stop), stop]
    return clauses, params


def _last_day(stop: datetime) -> str:
    """The last date partition before `stop` (exclusive); before the calendar, none."""
    try:
        return (stop - timedelta(microseconds=1)).date().isoformat()
    except OverflowError:
        return "0000-12-31"  # sorts before every date=YYYY-MM-DD folder


def _check_when(value: str | None) -> str | None:
    if value is not None and value.strip().lower() != "all":
        parse_when(value)
    return value


SinceOption = Annotated[
    str | None,
    typer.Option("--since", metavar="WHEN", callback=_check_when,
                 help=f"Runs started at or after WHEN: {WHEN_HELP}; 'all' for no bound."),
]
UntilOption = Annotated[
    str | None,
    typer.Option("--until", metavar="WHEN", callback=_check_when,
                 help=f"Runs started before WHEN ({WHEN_HELP}); a date includes that day."),
]
LabelsOption = Annotated[
    list[str] | None,
    typer.Option("--label", "-l", metavar="LABEL",
                 help="Only this pipeline label (repeatable)."),
]

__all__ = ["Format", "FormatOption", "LabelsOption", "OutputOption", "RootOption",
           "SinceOption", "StorageOption", "UntilOption", "cell",
           "check_output", "emit", "frame_lines", "human_bytes", "in_list", "ms_cell",
           "open_lake", "parse_when",
           "table_columns", "window"]
