"""Parameter markers users put in stage signatures through `typing.Annotated`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Candidates:
    """Marks the parameter holding the stage's candidate list: `Annotated[list[X], Candidates()]`."""

    name: str | None = None


@dataclass(frozen=True, slots=True)
class RawInput:
    """Captures a parameter into the stage's `input_json` under `name`."""

    name: str
