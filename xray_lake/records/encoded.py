"""A raw value already encoded as JSON text and cut at `cap`: a second `to_json` passes it on.

The writer process gets a record's raw values this way (writer/wire.py): encoded on the
application's side, instead of pickling, say, a 20,000-item catalog.
"""

from __future__ import annotations


class Encoded:
    """`text`: the JSON (cut and marked if `cut`); `cap`: the cap it was encoded under."""

    __slots__ = ("cap", "cut", "text")

    def __init__(self, text: str, cut: bool, cap: int | None) -> None:
        self.text, self.cut, self.cap = text, cut, cap
