"""What `collect` and `import` share: the options that name their runs, and the lake they write to."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from xray_lake.cli import resolve_root

if TYPE_CHECKING:  # loaded when the command runs (see the package docstring)
    from xray_lake.otlp.mapping import Options


class LabelFrom(StrEnum):
    root = "root"
    service = "service"


LabelFromOption = Annotated[
    LabelFrom, typer.Option("--label-from", case_sensitive=False,
                            help="Name runs after the root span (root) or the resource's "
                                 "service.name (service).")]
LabelOption = Annotated[str | None, typer.Option("--label", metavar="LABEL",
                                                 help="One label for every run.")]


def record_into(root: str | None, storage_option: list[str] | None, label_from: LabelFrom,
                label: str | None) -> tuple[str, Options]:
    """Check that the `otlp` extra is installed, point the SDK at the lake root, and return
    that root with the mapping options the label flags ask for."""
    from xray_lake.otlp import require

    require()
    import xray_lake as xr
    from xray_lake.otlp.mapping import Options

    lake_root = resolve_root(root, storage_option)
    xr.configure(root=lake_root)
    return lake_root, Options(label_from.value, label)
