"""Type-checker only (never run): calls mypy must reject, because decorators keep signatures.

Each rejected line carries the error code tests/test_typing.py expects on it.
"""

from __future__ import annotations

from typing import Annotated

import xray_lake as xr


@xr.filtering_stage("x", passed="p")
def keep(items: Annotated[list[dict[str, int]], xr.Candidates()], limit: int) -> list[int]:
    return [len(items), limit]


@xr.raw_stage
def bare(x: int, y: str) -> str:
    return y * x


class Pipe:
    @xr.scoring_stage
    async def score(self, items: list[int]) -> list[int]:
        return items


keep([{"a": 1}], "three")  # expect: arg-type
keep([{"a": 1}])  # expect: call-arg
bare("1", "a")  # expect: arg-type
bare(1, "a", 2)  # expect: call-arg
pending = Pipe().score(["not an int"])  # expect: list-item
