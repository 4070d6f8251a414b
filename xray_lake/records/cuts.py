"""Cap accounting: the size caps in force for a stage, and what they cut (for the warning).

Counting is kept apart from building rows so the one message that names the stage, the
fields and the knob to turn is written in one place.
"""

from __future__ import annotations

from typing import cast

from xray_lake.records.encode import cap_text
from xray_lake.records.pending import only_text


def cap_reasons(values: list[object], cap: int) -> tuple[list[object], int]:
    """Reason texts as strings, those over `cap` characters cut and marked '…[+N chars]'."""
    if values.count(None) == len(values) or (
            only_text(values) and max(map(len, cast("list[str]", filter(None, values))), default=0) <= cap):
        return values, 0  # the common cases, checked in C
    n_cut = 0
    out: list[object] = []
    for text in values:
        if text is None or (type(text) is str and len(text) <= cap):
            out.append(text)
            continue
        capped, was_cut = cap_text(text if isinstance(text, str) else str(text), cap)
        n_cut += was_cut
        out.append(capped)
    return out, n_cut


class Cuts:
    """What the caps cut in one stage, per field: the count and the cap (for the warning)."""

    __slots__ = ("by_field",)

    def __init__(self) -> None:
        self.by_field: dict[str, tuple[int, int | None, str | None]] = {}

    def add(self, field: str, n: int, cap: int | None, kind: str | None = None) -> None:
        if n:
            count = self.by_field.get(field, (0, cap, kind))[0]
            self.by_field[field] = (count + n, cap, kind)

    @property
    def total(self) -> int:
        return sum(n for n, _, _ in self.by_field.values())

    def message(self, stage: str) -> str:
        """The once-per-stage-name warning: which stage, which fields, the caps, the fix."""
        over: list[str] = []
        unfit: list[str] = []
        knobs: list[tuple[str, str]] = []
        for field, (n, cap, kind) in self.by_field.items():
            if kind is not None:
                unfit.append(f"{n} value(s) of promoted field {field} do not fit {kind}")
                continue
            knob = _CAP_KNOBS.get(field, _CAP_KNOBS["payload"])
            unit = "chars" if knob[0] == "reason_chars" or field == "promoted strings" \
                else "bytes"
            over.append(f"{n} {field} value(s) over {cap} {unit}")
            if knob not in knobs:
                knobs.append(knob)
        said: list[str] = []
        if over:
            said.append(
                f"stage {stage!r} had values longer than the size caps: {', '.join(over)}. "
                'They are recorded cut, their head kept and marked ({"$truncated": <bytes>, '
                "\"$head\": ...} in JSON, '…[+N chars]' in text), and counted in "
                "stages.n_truncated. To keep more, raise the cap for this stage with "
                f"caps=xr.Caps({', '.join(k + '=...' for k, _ in knobs)}) or for every stage "
                f"with xr.configure({', '.join(g + '=...' for _, g in knobs)}).")
        if unfit:
            said.append(
                f"stage {stage!r}: {', '.join(unfit)}; they are stored null and counted in "
                "stages.n_truncated. Declare the type the values have (xr.Field(name, str)) "
                "or fix the values.")
        return "xray-lake: " + " ".join(said) + " Warned once per stage name."


# field -> (xr.Caps argument, global setting)
_CAP_KNOBS: dict[str, tuple[str, str]] = {
    "payload": ("payload_bytes", "payload_cap_bytes"),
    "promoted strings": ("payload_bytes", "payload_cap_bytes"),
    "input_json": ("raw_bytes", "raw_cap_bytes"),
    "output_json": ("raw_bytes", "raw_cap_bytes"),
    "reason_text": ("reason_chars", "reason_cap_chars"),
    "reason": ("reason_chars", "reason_cap_chars"),
}
