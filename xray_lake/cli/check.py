"""`xray-lake check MODULE`: import a module and report its instrumented pipelines and stages.

Every decorator records what it decorated (sdk/inventory.py), so importing the module is the
whole analysis: what it decorated, the stage types and metric plugins registered, and any
problem, a DecorationError raised during the import first. Recording is off meanwhile, so
code that runs at import writes nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections import defaultdict
from enum import StrEnum
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from xray_lake.cli import stdout
from xray_lake.cli.help import Command
from xray_lake.cli.output import OFFLINE_WIDTH
from xray_lake.errors import DecorationError, XrayLakeError

if TYPE_CHECKING:  # loaded when the command runs (see the package docstring)
    from xray_lake.sdk.inventory import Declared

HELP = (
    "Import MODULE (a dotted name such as pkg.pipelines, or a file path.py) and report every "
    "instrumented pipeline, entrypoint and stage it defines (name, type, qualified name, "
    "file:line, field mappings), the stage types and metric plugins registered, and the "
    "problems found: a decorator misuse raised during the import, a pipeline class without "
    "an @xr.entrypoint, one stage name used with two types, a packaged plugin that failed to "
    "load. Nothing is recorded while the module is imported. Exit code 1 when there is a "
    "problem, 2 when MODULE cannot be found.\n\n"
    "Examples:\n\n"
    "  xray-lake check myapp.pipelines\n"
    "  xray-lake check examples/llm_judge.py\n"
    "  xray-lake check myapp.pipelines --format json"
)


class CheckFormat(StrEnum):
    """Report formats: a table for people, JSON for programs."""

    table = "table"
    json = "json"


def check(
    module: Annotated[str, typer.Argument(metavar="MODULE",
                                          help="pkg.module, or a path to a .py file.")],
    fmt: Annotated[CheckFormat, typer.Option("--format", "-f", case_sensitive=False,
                                             help="table (default) or json.")] = (
        CheckFormat.table),
) -> None:
    import orjson

    report = inspect_module(module)
    if fmt is CheckFormat.json:
        typer.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        _print(report)
    if report["problems"]:
        raise typer.Exit(1)


def inspect_module(target: str) -> dict[str, Any]:
    """Import `target` with recording off; what it declared, registered and got wrong."""
    from xray_lake.config import configure, get_settings
    from xray_lake.records import plugin_registry as registry
    from xray_lake.sdk import inventory

    before = {(d.kind, d.qualname, d.where) for d in inventory.declared()}
    problems = [f"packaged plugin {name}: {problem}"
                for name, problem in registry.load_entry_points()]
    enabled = get_settings().enabled
    configure(enabled=False)
    try:
        name = _import(target)
    except DecorationError as exc:
        name = _module_name(target)
        problems.insert(0, str(exc))
    finally:
        configure(enabled=enabled)
    found = sorted((d for d in inventory.declared()
                    if (d.kind, d.qualname, d.where) not in before or _inside(d.module, name)),
                   key=_place)
    problems += _problems(found)
    types = registry.stage_types()
    return {
        "module": name,
        "declared": [_entry(d) for d in found],
        "stage_types": [{"name": t.name, "base": t.base, "fields": dict(t.fields),
                         "required": list(t.required)} for t in types.values()],
        "metrics": [{"stage_type": p.stage_type, "name": p.name, "qualname": p.qualname,
                     "where": p.where, "fields": list(p.fields), "frame": p.frame}
                    for p in registry.plugins()],
        "problems": problems,
    }


def _module_name(target: str) -> str:
    return Path(target).stem if _is_path(target) else target


def _is_path(target: str) -> bool:
    return target.endswith(".py") or os.sep in target or "/" in target


def _inside(module: str, name: str) -> bool:
    return module == name or module.startswith(name + ".")


def _import(target: str) -> str:
    """Import a dotted module or a file; returns its module name. Import failures (other than
    a DecorationError, which is a finding) become one-line errors."""
    if _is_path(target):
        path = Path(target)
        if not path.is_file():
            raise typer.BadParameter(f"no such file: {target}", param_hint="'MODULE'")
        name = path.stem if path.stem not in sys.modules else f"_xray_check_{path.stem}"
        sys.path.insert(0, str(path.resolve().parent))  # its siblings import as in a script
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise typer.BadParameter(f"{target} is not a Python file", param_hint="'MODULE'")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        _run(lambda: spec.loader.exec_module(module), target)
        return name
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: modules of the current folder
    try:
        found = importlib.util.find_spec(target) is not None
    except (ImportError, ValueError):  # a parent package that does not exist or fails
        found = False
    if not found:
        raise typer.BadParameter(f"no module named {target!r} (run from the folder that holds "
                                 "it, or pass the path of a .py file)", param_hint="'MODULE'")
    _run(lambda: importlib.import_module(target), target)
    return target


def _run(load: Any, target: str) -> ModuleType | None:
    try:
        return load()  # type: ignore[no-any-return]
    except DecorationError:
        raise
    except SyntaxError as exc:
        raise XrayLakeError(f"cannot import {target}: SyntaxError: {exc.msg} "
                            f"({exc.filename}:{exc.lineno})") from None
    except (Exception, SystemExit) as exc:
        where = _raised_at(exc)
        raise XrayLakeError(f"cannot import {target}: {type(exc).__name__}: {exc}{where}"
                            ) from None


def _raised_at(exc: BaseException) -> str:
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    if last is None:
        return ""
    return f" ({last.tb_frame.f_code.co_filename}:{last.tb_lineno})"


def _problems(found: list[Declared]) -> list[str]:
    problems: list[str] = []
    entries = [d for d in found if d.kind == "entrypoint"]
    for d in found:
        if d.kind == "pipeline" and d.type == "class" and not any(
                e.qualname.startswith(d.qualname + ".") for e in entries):
            problems.append(f"pipeline {d.name!r} ({d.qualname}, {_where(d)}) has no "
                            "@xr.entrypoint method: its stages each record a run of their own. "
                            "Fix: decorate the method that handles one request with "
                            "@xr.entrypoint")
    types_by_name: dict[str, dict[str, Declared]] = defaultdict(dict)
    for d in found:
        if d.kind == "stage" and d.type is not None:
            types_by_name[d.name].setdefault(d.type, d)
    for name, by_type in types_by_name.items():
        if len(by_type) > 1:
            uses = ", ".join(f"{t} at {d.where}" for t, d in by_type.items())
            problems.append(f"stage name {name!r} is used with {len(by_type)} types ({uses}): "
                            "queries by name mix them. Fix: give each its own name")
    return problems


def _place(d: Declared) -> tuple[str, int]:
    """Sort key: file, then line (a class's line is looked up only for sorting and display)."""
    file, _, line = _where(d).rpartition(":")
    return file, int(line) if line.isdigit() else 0


def _where(d: Declared) -> str:
    """file:line; a class's line is looked up now (not at decoration, where it costs)."""
    if not d.where.endswith(":?"):
        return d.where
    obj: Any = sys.modules.get(d.module)
    for part in d.qualname[len(d.module) + 1:].split("."):
        obj = getattr(obj, part, None)
    try:
        return f"{d.where[:-2]}:{inspect.getsourcelines(obj)[1]}"
    except (TypeError, OSError):
        return d.where


def _entry(d: Declared) -> dict[str, Any]:
    return {"kind": d.kind, "name": d.name, "type": d.type, "qualname": d.qualname,
            "where": _where(d), "fields": d.fields}


def _print(report: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = stdout()
    if not out.is_terminal and not os.environ.get("COLUMNS"):
        out = type(out)(highlight=False, width=OFFLINE_WIDTH)
    if report["declared"]:
        table = Table(show_edge=False, pad_edge=False, header_style="bold")
        for column in ("kind", "name", "type", "qualname", "where", "fields"):
            table.add_column(column, overflow="fold")
        for e in report["declared"]:
            fields = ", ".join(f"{k}={v}" for k, v in e["fields"].items())
            table.add_row(e["kind"], escape(e["name"]), e["type"] if e["kind"] == "stage"
                          else "", escape(e["qualname"]), escape(e["where"]), escape(fields))
        out.print(table)
    for t in report["stage_types"]:
        fields = ", ".join(f"{f}->{r}" if r else f for f, r in t["fields"].items())
        out.print(f"stage type {t['name']!r}: based on {t['base']}; fields: {fields or 'none'}"
                  + (f"; required: {', '.join(t['required'])}" if t["required"] else ""),
                  markup=False, soft_wrap=True)
    for m in report["metrics"]:
        out.print(f"metric plugin {m['stage_type']}:{m['name']} = {m['qualname']} "
                  f"({m['where']})", markup=False, soft_wrap=True)
    kinds = [e["kind"] for e in report["declared"]]
    out.print(f"{report['module']}: {_count(kinds.count('pipeline'), 'pipeline')}, "
              f"{_count(kinds.count('entrypoint'), 'entrypoint')}, "
              f"{_count(kinds.count('stage'), 'stage')}, "
              f"{_count(len(report['problems']), 'problem')}", markup=False, soft_wrap=True)
    for problem in report["problems"]:
        out.print(f"problem: {problem}", markup=False, soft_wrap=True)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def register(app: typer.Typer) -> None:
    """Add `check` to the app."""
    app.command("check", help=HELP, cls=Command,
                no_args_is_help=True)(check)
