"""`xray-lake --help` without loading typer: the root help in click's plain layout.

Loading typer (and its click) is most of a `--help`'s time; the root help is fixed text
(the description, two options, the command table, the help topics), so it is laid out here
the way click lays it out. tests/test_cli_start.py checks it matches the typer app's own
`--help` at several widths.
"""

from __future__ import annotations

import shutil
import textwrap

from xray_lake.cli.commands import COMMANDS, ROOT_HELP, TOPIC_LINES

USAGE = "Usage: xray-lake [OPTIONS] COMMAND [ARGS]..."
OPTIONS = [("--version", "Print the version and exit."),
           ("-h, --help", "Show this message and exit.")]
INDENT = 2
COLUMN_MAX = 30  # the widest first column of a definition list
COLUMN_GAP = 2


def width() -> int:
    """click's: the terminal's width (80 at most), less 2, and never under 50."""
    return max(min(shutil.get_terminal_size().columns, 80) - 2, 50)


def render(columns: int | None = None) -> str:
    """The root help, as `xray-lake --help` prints it."""
    w = columns if columns is not None else width()
    out = [USAGE, ""]
    out += _text(ROOT_HELP, w)
    for title, rows in (("Options", OPTIONS),
                        ("Commands", [(name, line) for name, (_, line) in COMMANDS.items()]),
                        ("Help topics ('xray-lake help TOPIC')", list(TOPIC_LINES.items()))):
        out += ["", f"{title}:"]
        out += _definitions(rows, w)
    return "\n".join(out) + "\n"


def _text(text: str, w: int) -> list[str]:
    """Paragraphs wrapped at `w`, indented; an indented paragraph (examples) keeps its lines."""
    lines: list[str] = []
    pad = " " * INDENT
    for n, paragraph in enumerate(text.strip("\n").split("\n\n")):
        if n:
            lines.append("")
        rows = paragraph.splitlines()
        if rows and all(row.startswith("  ") for row in rows):
            lines += [pad + row for row in rows]
        else:
            lines += textwrap.wrap(" ".join(paragraph.split()), w, initial_indent=pad,
                                   subsequent_indent=pad, break_on_hyphens=True) or [pad]
    return lines


def _definitions(rows: list[tuple[str, str]], w: int) -> list[str]:
    first = min(max(len(term) for term, _ in rows), COLUMN_MAX) + COLUMN_GAP
    text_width = max(w - first - 2, 10)
    lines: list[str] = []
    for term, text in rows:
        head = " " * INDENT + term
        wrapped = textwrap.wrap(" ".join(text.split()), text_width) or [""]
        if len(term) <= first - COLUMN_GAP:
            lines.append(head + " " * (first - len(term)) + wrapped[0])
        else:
            lines += [head, " " * (first + INDENT) + wrapped[0]]
        lines += [" " * (first + INDENT) + more for more in wrapped[1:]]
    return lines
