"""`xray-lake replay`: move spooled files (written while the lake was unreachable) into their lake."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

from xray_lake.cli import resolve_root, stderr, stdout
from xray_lake.cli.help import Command
from xray_lake.cli.output import RootOption, StorageOption, human_bytes
from xray_lake.cli.progress import progress_bar
from xray_lake.errors import XrayLakeError

if TYPE_CHECKING:  # loaded when the command runs (see the package docstring)
    from xray_lake.storage.spool import ReplayResult

HELP = (
    "Move what the writer spooled while the lake was unreachable into the lake, exactly once "
    "(a replay killed halfway and run again neither loses nor doubles a row; replays may run "
    "at once, and alongside writers).\n\n"
    "Each spooled lake goes to the root it was recorded for. --root on the command line "
    "replays only that lake's spool; if no spool was recorded for it and the spool holds "
    "exactly one lake, that lake is replayed into --root instead (a moved lake). Prints "
    "files, rows and bytes replayed per root; exit code 1 if any file could not be moved.\n\n"
    "Examples:\n\n"
    "  xray-lake replay\n"
    "  xray-lake replay --spool /var/lib/xray-lake/spool\n"
    "  xray-lake replay --root /mnt/new-home-of-the-lake"
)

SpoolOption = Annotated[
    str | None,
    typer.Option(
        "--spool",
        envvar="XRAY_LAKE_SPOOL",
        metavar="DIR",
        show_default="~/.local/state/xray-lake/spool",
        help="Spool folder (default: the settings' spool_dir).",
    ),
]


@dataclass(frozen=True, slots=True)
class Spooled:
    """One lake's spool folder, the root it was recorded for, and where it will be replayed."""

    folder: str
    recorded_root: str
    target: str
    files: int


def plan(spool_dir: str, root: str | None) -> list[Spooled]:
    """Which spooled lakes to replay where; `root` (from the command line) selects or overrides.

    Raises XrayLakeError when `root` matches no spooled lake and the spool holds several.
    """
    from xray_lake.storage.spool import canonical_root, pending, spooled_roots

    found = [(folder, recorded, len(pending(folder)))
             for folder, recorded in spooled_roots(spool_dir)]
    found = [f for f in found if f[2]]
    if root is None:
        return [Spooled(folder, recorded, recorded, n) for folder, recorded, n in found]
    wanted = canonical_root(root)
    chosen = [Spooled(folder, recorded, root, n) for folder, recorded, n in found
              if canonical_root(recorded) == wanted]
    if chosen or not found:
        return chosen
    if len(found) == 1:
        folder, recorded, n = found[0]
        return [Spooled(folder, recorded, root, n)]
    roots = ", ".join(recorded for _folder, recorded, _n in found)
    raise XrayLakeError(
        f"--root {root} matches none of the {len(found)} lakes spooled in {spool_dir} "
        f"({roots}): run `xray-lake replay` without --root to replay each into its own root"
    )


def replay(
    ctx: typer.Context,
    spool: SpoolOption = None,
    root: RootOption = None,
    storage_option: StorageOption = None,
) -> None:
    from rich.markup import escape

    from xray_lake.config import get_settings
    from xray_lake.storage.spool import pending

    resolve_root(root, storage_option)  # validates and applies --storage-option
    spool_dir = spool or get_settings().spool_dir
    source = ctx.get_parameter_source("root")
    from_command_line = source is not None and source.name == "COMMANDLINE"
    # $XRAY_LAKE_ROOT selects nothing: it must never send one lake's spool into another root
    todo = plan(spool_dir, root if from_command_line else None)
    out, err = stdout(), stderr()
    if not todo:
        where = f" for {root}" if from_command_line else ""
        out.print(f"nothing to replay{where} in {escape(spool_dir)}", soft_wrap=True)
        return
    failed = False
    for item in todo:
        if item.target != item.recorded_root:
            err.print(f"replaying the spool of {item.recorded_root} into {item.target}",
                      markup=False, soft_wrap=True)
        result = _replay_one(item)
        line = (f"{escape(item.target)}: replayed {result.files} files, {result.rows:,} rows, "
                f"{human_bytes(result.bytes)}")
        out.print(line, soft_wrap=True)
        if result.failed:
            failed = True
            left = len(pending(item.folder))
            err.print(f"xray-lake: error: replay into {item.target} stopped: {result.error} "
                      f"({left} files left in {item.folder}; run `xray-lake replay` again once "
                      "the lake is writable)", markup=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)


def _replay_one(item: Spooled) -> ReplayResult:
    """Replay one spooled lake, with a progress bar on a terminal."""
    from xray_lake.config import get_settings
    from xray_lake.storage.spool import replay_folder

    with progress_bar("replaying", total=item.files) as advance:
        return replay_folder(item.folder, item.target, fsync=get_settings().fsync,
                             progress=advance)


def register(app: typer.Typer) -> None:
    """Add `replay` to the app."""
    app.command("replay", help=HELP, cls=Command,
                no_args_is_help=False)(replay)
