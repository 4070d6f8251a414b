"""A pipeline written with `from __future__ import annotations`: every annotation is a string.

Used by tests/test_sdk_capture.py to check that `xr.Candidates` / `xr.RawInput` markers are
found in stringified `Annotated[...]` annotations, including ones naming types defined later
in the module and ones that cannot be evaluated at decoration time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import xray_lake as xr

if TYPE_CHECKING:
    from collections.abc import Sequence  # never importable at run time


@xr.pipeline("future-pipeline", id="run_id")
class FuturePipeline:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    @xr.entrypoint
    def run(self, query: str, catalog: list[Product]) -> list[Product]:
        kept = self.keep(self.context_note(query), catalog, limit=3)
        return self.order(kept)

    @xr.raw_stage("note")
    def context_note(self, query: Annotated[str, xr.RawInput("q")], ignored: int = 0) -> str:
        return query.upper()

    @xr.filtering_stage("keep", id="sku")
    def keep(
        self,
        note: str,
        products: Annotated[Sequence[Product], xr.Candidates("products")],
        limit: Annotated[int, xr.RawInput("limit")],
    ) -> list[Product]:
        return [p for p in products if p.price < 50][:limit]

    @xr.ranking_stage("order", id="sku", score="price")
    def order(self, products: Annotated[list[Product], xr.Candidates()]) -> list[Product]:
        return sorted(products, key=lambda p: p.price)


@dataclass
class Product:
    sku: str
    price: float


def make_bad_field_stage() -> object:
    """A stage whose mapping names no field of the (string-annotated) dataclass candidate."""

    @xr.scoring_stage("bad", id="sku", score="prise")
    def bad(products: Annotated[list[Product], xr.Candidates()]) -> list[Product]:
        return products

    return bad


def make_bare_marker_stage() -> object:
    @xr.filtering_stage("bare")
    def bare(products: Annotated[list[Product], xr.Candidates], other: int) -> list[Product]:
        return products

    return bare
