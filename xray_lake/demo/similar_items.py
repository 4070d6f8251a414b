"""The demo's second pipeline, `similar_items`: "more like this" for one product.

A smaller retrieve, score, filter, rank than `fashion_search`, over the same catalog; the
demo loop (`xray_lake.demo.fashion_search.run_demo`) runs it for about one run in four.
"""

from __future__ import annotations

from typing import Annotated

import xray_lake as xr
from xray_lake.demo.catalog import CatalogPipeline, Product


@xr.pipeline("similar_items", id="run_id")
class SimilarItems(CatalogPipeline):
    """"More like this" under a product page: smaller lists, same stage types."""

    @xr.entrypoint
    def similar(self, product_id: str, k: int = 12) -> list[str]:
        """The `k` in-stock products most like `product_id`, best first."""
        anchor = self.catalog.by_id[product_id]
        pool = self.neighbours(anchor)
        scored = self.similarity(pool, anchor)
        kept = self.in_stock([s.item for s in scored])
        sim = {s.item["id"]: s.score or 0.0 for s in scored}
        return [p["id"] for p in self.top_k(kept, sim, k)]

    @xr.retrieval_stage("same-category", id="id")
    def neighbours(self, anchor: Product) -> list[Product]:
        return [p for p in self.catalog.lookup([f"category:{anchor['category']}"])
                if p["id"] != anchor["id"]]

    @xr.scoring_stage("similarity", id="id")
    def similarity(self, products: Annotated[list[Product], xr.Candidates()],
                   anchor: Product) -> list[xr.Scored[Product]]:
        """Colour, price closeness and shared tags, in catalog order."""
        tags = set(anchor["tags"])
        out: list[xr.Scored[Product]] = []
        for p in products:
            price_gap = abs(p["price"] - anchor["price"]) / max(p["price"], anchor["price"])
            shared = len(tags & set(p["tags"])) / len(tags | set(p["tags"]))
            score = 0.4 * (p["colour"] == anchor["colour"]) + 0.3 * (1 - price_gap) + 0.3 * shared
            out.append(xr.Scored(p, round(score, 4)))
        return out

    @xr.filtering_stage("in-stock", id="id")
    def in_stock(self, products: Annotated[list[Product], xr.Candidates()]) -> list[Product]:
        """Survivors only: the dropped products are the inputs missing from the output."""
        return [p for p in products if p["in_stock"]]

    @xr.ranking_stage("top-k", id="id")
    def top_k(self, products: Annotated[list[Product], xr.Candidates()],
              similarity: dict[str, float], k: Annotated[int, xr.RawInput("k")]) -> list[Product]:
        return sorted(products, key=lambda p: -similarity[p["id"]])[:k]
