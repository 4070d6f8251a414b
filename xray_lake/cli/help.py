"""Plain, click-style help for every command, and `xray-lake help [TOPIC | COMMAND]`.

Typer's rich help imports rich on every `--help` and prints `<str>`, `<bool>` and
`{RUN_ID}` where click prints `RUN_ID`; `Command` and `Group` write click's layout instead:
usage with bare argument names, `-f, --format [table|csv|...]`, defaults and environment
variables in brackets, example paragraphs kept as written. Options described once for all
commands (the S3 storage options) are hidden from each command and live in `TOPICS`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from xray_lake.cli.commands import TOPIC_LINES

# The typer-internal base classes name click's types; these aliases keep our signatures short.
Context = Any
Formatter = Any
Param = Any

STORAGE = """\
A lake root is a local folder or s3://bucket/prefix. For S3 (or MinIO, SeaweedFS and other
S3-compatible stores), every command takes --storage-option KEY=VALUE, repeatable; a key
left unset comes from the AWS_* environment variables, as for the AWS CLI. The same keys
are `storage_options` of xr.configure() in Python.

Keys:

{keys}

Examples:

  xray-lake runs --root s3://bucket/lake
  xray-lake runs --root s3://bucket/lake --storage-option endpoint_url=http://127.0.0.1:8333
  AWS_REGION=eu-west-1 xray-lake stats --root s3://bucket/lake --since 24h
  xray-lake query "select count(*) from runs" --root s3://public/lake \\
      --storage-option anonymous=true
"""


def _storage() -> str:
    from xray_lake.config import STORAGE_OPTIONS

    width = max(map(len, STORAGE_OPTIONS)) + 4
    keys = "\n".join(textwrap.fill(text, 88, initial_indent=f"  {key:<{width - 2}}",
                                   subsequent_indent=" " * width)
                      for key, text in STORAGE_OPTIONS.items())
    return STORAGE.format(keys=keys)


TOPICS: dict[str, tuple[str, Callable[[], str]]] = {
    "storage": (TOPIC_LINES["storage"], _storage),
}
"""`xray-lake help TOPIC`: a one-line summary and a function writing the text."""


# --- help records ----------------------------------------------------------------------------


def _default(param: Param) -> str | None:
    if isinstance(param.show_default, str):
        return param.show_default
    value = param.default
    if not param.show_default or value is None or value in ((), []) or callable(value):
        return None
    if getattr(param, "is_flag", False):
        return None
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def metavar(param: Param) -> str:
    """`FILE`, `[table|csv|json]` for a choice, else the parameter's name in capitals."""
    if param.metavar:
        return str(param.metavar)
    choices = getattr(getattr(param, "type_descriptor", None), "choices", None)
    if choices:
        return "[" + "|".join(str(c.value if isinstance(c, Enum) else c) for c in choices) + "]"
    return str(param.name or "").upper()


def help_record(param: Param) -> tuple[str, str] | None:
    """One row of the Arguments or Options list, or None for a hidden parameter."""
    if getattr(param, "hidden", False):
        return None
    text = getattr(param, "help", None) or ""
    if param.param_type_name == "argument":
        return metavar(param), text
    names = sorted(param.opts, key=lambda opt: opt.startswith("--"))
    name = ", ".join(names)
    if not param.is_flag and not getattr(param, "count", False):
        name += f" {metavar(param)}"
    extra = []
    if param.envvar and getattr(param, "show_envvar", True):
        extra.append(f"env var: {param.envvar}")
    if (default := _default(param)) is not None:
        extra.append(f"default: {default}")
    if param.required:
        extra.append("required")
    if extra:
        text = f"{text}  [{'; '.join(extra)}]" if text else f"[{'; '.join(extra)}]"
    return name, text


def usage_piece(param: Param) -> str:
    """An argument in the usage line: `RUN_ID`, `[SQL]` when optional, `FILE...` for many."""
    name = metavar(param)
    if param.nargs != 1:
        name += "..."
    return name if param.required else f"[{name}]"


def write_params(command: Any, ctx: Context, formatter: Formatter) -> None:
    args: list[tuple[str, str]] = []
    opts: list[tuple[str, str]] = []
    for param in command.get_params(ctx):
        record = help_record(param)
        if record is not None:
            (args if param.param_type_name == "argument" else opts).append(record)
    for title, rows in (("Arguments", args), ("Options", opts)):
        if rows:
            with formatter.section(title):
                formatter.write_dl(rows)


def write_text(text: str | None, formatter: Formatter) -> None:
    """Help text whose indented paragraphs (examples) keep their lines, as click's `\\b` does."""
    if not text:
        return
    paragraphs = [
        f"\b\n{p}" if p.strip() and all(line.startswith("  ") for line in p.splitlines()) else p
        for p in text.strip("\n").split("\n\n")
    ]
    formatter.write_paragraph()
    with formatter.indentation():
        formatter.write_text("\n\n".join(paragraphs))


def bool_help_option(option: Any) -> Any:
    """The `-h/--help` option with a bool default: typer coerces a None through pydantic, which
    `xray-lake CMD --help` would otherwise import for the root's unused help option."""
    if option is not None and option.default is None:
        option.default = False
    return option


class Command(TyperCommand):
    """A command whose help is click's plain layout (see the module docstring)."""

    def get_help_option(self, ctx: Context) -> Any:
        return bool_help_option(super().get_help_option(ctx))

    def collect_usage_pieces(self, ctx: Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        return pieces + [usage_piece(p) for p in self.get_params(ctx)
                         if p.param_type_name == "argument"]

    def format_help_text(self, ctx: Context, formatter: Formatter) -> None:
        write_text(self.help, formatter)

    def format_options(self, ctx: Context, formatter: Formatter) -> None:
        write_params(self, ctx, formatter)


class Group(TyperGroup):
    """The root command's help in the same layout, with the help topics after the commands."""

    def get_help_option(self, ctx: Context) -> Any:
        return bool_help_option(super().get_help_option(ctx))

    def format_help_text(self, ctx: Context, formatter: Formatter) -> None:
        write_text(self.help, formatter)

    def format_options(self, ctx: Context, formatter: Formatter) -> None:
        write_params(self, ctx, formatter)
        self.format_commands(ctx, formatter)
        with formatter.section("Help topics ('xray-lake help TOPIC')"):
            formatter.write_dl([(name, summary) for name, (summary, _) in TOPICS.items()])


HELP = (
    "Show help on a topic or a command; without one, the list of commands and topics.\n\n"
    f"Topics: {', '.join(TOPICS)}.\n\n"
    "Examples:\n\n"
    "  xray-lake help storage\n"
    "  xray-lake help why"
)


def help_command(
    ctx: typer.Context,
    topic: Annotated[str | None, typer.Argument(
        metavar="TOPIC", help=f"A topic ({', '.join(TOPICS)}) or a command.",
        show_default=False)] = None,
) -> None:
    root = ctx.find_root()
    if topic is None:
        typer.echo(root.get_help())
        return
    if topic in TOPICS:
        typer.echo(TOPICS[topic][1](), nl=False)
        return
    group = root.command
    command = group.get_command(root, topic) if isinstance(group, TyperGroup) else None
    if command is None:
        names = [*TOPICS, *(group.list_commands(root) if isinstance(group, TyperGroup) else [])]
        raise typer.BadParameter(f"no help topic or command {topic!r}; one of: "
                                 f"{', '.join(names)}", param_hint="'TOPIC'")
    typer.echo(command.get_help(type(root)(command, info_name=topic, parent=root)))


def register(app: typer.Typer) -> None:
    """Add `help` to the app."""
    app.command("help", help=HELP, cls=Command)(help_command)
