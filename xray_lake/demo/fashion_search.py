"""A fashion search engine instrumented with xray-lake: the pipeline that motivated the product.

Two pipelines record into the lake:

* ``fashion_search``: a shopper's query ("red dress under 40") becomes key terms and
  structured filters (generation stages), a catalog query (retrieval), two filters with
  reason labels (``wrong_category``, ``wrong_colour``, ``price_too_high``, ``out_of_stock``),
  two scores (text relevance, personalisation) and a diversity-aware rerank.
* ``similar_items`` (in ``similar_items.py``): "more like this" for one product, a smaller
  retrieve, score, filter, rank.

Both search the seeded catalog of ``catalog.py``.

Queries vary, so in some runs the filters drop more than 90% of what the catalog returned
and in others almost nothing. About 2% of catalog calls time out (``CatalogTimeout``); the
demo loop catches that, so the run is recorded as a failure and the loop carries on.

Everything random comes from one seeded ``random.Random``: the same seed gives the same
queries, products, scores and failures. Only the run ids carry a random batch tag, so that
running the demo twice into one lake never produces two runs with the same id.

Run it with ``xray-lake demo`` or ``python -m xray_lake.demo.fashion_search``.
"""

from __future__ import annotations

import argparse
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypedDict

import xray_lake as xr
from xray_lake.demo.catalog import (
    BRANDS,
    COLOURS,
    NOUNS,
    TAGS,
    Catalog,
    CatalogPipeline,
    CatalogTimeout,
    Product,
    random_query,
)
from xray_lake.demo.similar_items import SimilarItems

RESULTS_PER_PAGE = 24
RERANK_DEPTH = 48
MAX_PER_BRAND = 3
FLUSH_TIMEOUT_S = 30.0


class Term(TypedDict):
    """One key term of a query, as the term parser generates it."""

    id: str
    term: str
    kind: str  # category | colour | tag | brand | price | keyword
    value: str | float
    why: str


class Filter(TypedDict):
    """One structured filter generated from the terms."""

    id: str
    field: str
    op: str  # eq | lte
    value: str | float | bool
    why: str


class Profile(TypedDict):
    """What personalisation knows about a shopper."""

    user_id: str
    favourite_brands: list[str]
    favourite_colours: list[str]
    budget: float
    relevance_weight: float



# --- the pipeline -----------------------------------------------------------------------


@xr.pipeline("fashion_search", id="run_id")
class FashionSearch(CatalogPipeline):
    """One shopper query -> one results page. Each `search()` call is one recorded run."""

    @xr.entrypoint
    def search(self, query: str, user_id: str) -> list[dict[str, Any]]:
        """Query -> terms -> filters -> catalog -> filter -> score -> rerank -> one page."""
        terms = self.parse_terms(query)
        filters = self.generate_filters(terms)
        profile = self.load_profile(user_id)
        matches = self.query_catalog(terms)
        verdicts = self.apply_filters(matches, filters)
        kept = [p for p, v in zip(matches, verdicts, strict=True) if v["passed"]]
        in_stock = [v.item for v in self.check_stock(kept) if v.passed]
        by_relevance = self.text_relevance(in_stock, terms)
        relevance = {s.item["id"]: s.score or 0.0 for s in by_relevance}
        personal = self.personalise([s.item for s in by_relevance], profile)
        page = self.rerank(personal, relevance, profile["relevance_weight"])
        return [{"id": p["id"], "title": p["title"], "price": p["price"]}
                for p in page[:RESULTS_PER_PAGE]]

    @xr.generation_stage("parse-terms", reason="why")
    def parse_terms(self, query: Annotated[str, xr.RawInput("query")]) -> list[Term]:
        """Key terms of the query, each with why it was read that way."""
        tokens = query.lower().split()
        terms: list[Term] = []
        i = 0
        while i < len(tokens):
            word = tokens[i]
            if word == "under" and i + 1 < len(tokens) and tokens[i + 1].isdigit():
                cap = float(tokens[i + 1])
                terms.append(Term(id=f"term:under-{tokens[i + 1]}", term=f"under {tokens[i + 1]}",
                                  kind="price", value=cap,
                                  why=f"'under {tokens[i + 1]}' reads as a price cap"))
                i += 2
                continue
            if word in NOUNS:
                terms.append(Term(id=f"term:{word}", term=word, kind="category",
                                  value=NOUNS[word],
                                  why=f"'{word}' names the catalog category {NOUNS[word]!r}"))
            elif word in COLOURS:
                terms.append(Term(id=f"term:{word}", term=word, kind="colour", value=word,
                                  why=f"'{word}' is a catalog colour"))
            elif word in TAGS:
                terms.append(Term(id=f"term:{word}", term=word, kind="tag", value=word,
                                  why=f"'{word}' is a style tag; used for recall, not as a filter"))
            elif word.capitalize() in BRANDS:
                terms.append(Term(id=f"term:{word}", term=word, kind="brand", value=word,
                                  why=f"'{word}' is a brand; boosts recall and relevance"))
            else:
                terms.append(Term(id=f"term:{word}", term=word, kind="keyword", value=word,
                                  why=f"'{word}' is not in the catalog vocabulary; title match only"))
            i += 1
        return terms

    @xr.generation_stage("generate-filters", reason="why")
    def generate_filters(self, terms: list[Term]) -> list[Filter]:
        """Structured filters implied by the terms; stock is always required."""
        filters: list[Filter] = []
        for t in terms:
            if t["kind"] == "category":
                filters.append(Filter(id="category", field="category", op="eq", value=t["value"],
                                      why=f"the query names a category ('{t['term']}')"))
            elif t["kind"] == "colour":
                filters.append(Filter(id="colour", field="colour", op="eq", value=t["value"],
                                      why=f"the query names a colour ('{t['term']}')"))
            elif t["kind"] == "price":
                filters.append(Filter(id="max_price", field="price", op="lte", value=t["value"],
                                      why=f"'{t['term']}' caps the price"))
        filters.append(Filter(id="in_stock", field="in_stock", op="eq", value=True,
                              why="only products that can ship today are shown"))
        return filters

    @xr.raw_stage("load-profile")
    def load_profile(self, user_id: str) -> Profile:
        """The shopper's tastes (a stand-in for a profile service; stable per user id)."""
        r = random.Random(user_id)
        return Profile(user_id=user_id, favourite_brands=r.sample(BRANDS, 3),
                       favourite_colours=r.sample(COLOURS, 2),
                       budget=round(r.uniform(30, 150), 0),
                       relevance_weight=round(r.uniform(0.3, 0.9), 2))

    @xr.retrieval_stage("catalog-query", id="id")
    def query_catalog(self, terms: list[Term]) -> list[Product]:
        """Recall-oriented: any product matching any term (filters are applied later)."""
        keys: list[str] = []
        for t in terms:
            if t["kind"] in {"category", "colour", "tag"}:
                keys.append(f"{t['kind']}:{t['value']}")
            elif t["kind"] == "brand":
                keys.append(f"brand:{t['value']}")
            elif t["kind"] == "keyword":
                keys.append(f"word:{t['value']}")
        return self.catalog.lookup(keys or ["top-rated"])

    @xr.filtering_stage("attribute-filters", id="id", passed="passed", reason_label="reason",
                        reason_text="explanation")
    def apply_filters(self, products: Annotated[list[Product], xr.Candidates()],
                      filters: list[Filter]) -> list[Product]:
        """Category, colour and price filters; returns every product with a verdict (mapped
        fields). The first filter a product fails is its reason."""
        want = {f["id"]: f["value"] for f in filters}
        category, colour, cap = want.get("category"), want.get("colour"), want.get("max_price")
        verdicts: list[Product] = []
        for p in products:
            if category is not None and p["category"] != category:
                verdicts.append({**p, "passed": False, "reason": "wrong_category",
                                 "explanation": f"category is {p['category']}, "
                                                f"query asks for {category}"})
            elif colour is not None and p["colour"] != colour:
                verdicts.append({**p, "passed": False, "reason": "wrong_colour",
                                 "explanation": f"colour is {p['colour']}, "
                                                f"query asks for {colour}"})
            elif isinstance(cap, float) and p["price"] > cap:
                verdicts.append({**p, "passed": False, "reason": "price_too_high",
                                 "explanation": f"price {p['price']:.2f} is above "
                                                f"the cap {cap:.0f}"})
            else:
                verdicts.append({**p, "passed": True, "reason": None, "explanation": None})
        return verdicts

    @xr.filtering_stage("stock-filter", id="id")
    def check_stock(self, products: Annotated[list[Product], xr.Candidates()]
                    ) -> list[xr.Filtered[Product]]:
        """Drops what cannot ship; returns every product wrapped in an `xr.Filtered` verdict."""
        return [
            xr.Filtered(p, True) if p["in_stock"] else
            xr.Filtered(p, False, "out_of_stock", f"{p['id']} has no stock in any warehouse")
            for p in products
        ]

    @xr.scoring_stage("text-relevance", id="id")
    def text_relevance(self, products: Annotated[list[Product], xr.Candidates()],
                       terms: list[Term]) -> list[xr.Scored[Product]]:
        """How well title, brand and tags match the query words; best first."""
        words = {t["term"] for t in terms if t["kind"] != "price"}
        words |= {str(t["value"]) for t in terms if t["kind"] == "category"}
        scored: list[xr.Scored[Product]] = []
        for p in products:
            text = {*p["title"].lower().split(), p["category"], p["brand"].lower(), *p["tags"]}
            overlap = len(words & text) / max(1, len(words))
            scored.append(xr.Scored(p, round(overlap + 0.04 * p["rating"], 4)))
        scored.sort(key=lambda s: -(s.score or 0.0))
        return scored

    @xr.scoring_stage("personalisation", id="id", score="score")
    def personalise(self, products: Annotated[list[Product], xr.Candidates()],
                    profile: Profile) -> list[Product]:
        """Popularity times the shopper's brand, colour and budget affinity (mapped `score`)."""
        brands, colours = set(profile["favourite_brands"]), set(profile["favourite_colours"])
        out: list[Product] = []
        for p in products:
            popularity = p["rating"] / 5 * min(1.0, 0.3 + p["reviews"] / 200)
            affinity = (1.0 + 0.5 * (p["brand"] in brands) + 0.3 * (p["colour"] in colours)
                        - 0.4 * (p["price"] > profile["budget"]))
            out.append({**p, "score": round(popularity * affinity, 4)})
        return out

    @xr.ranking_stage("rerank", id="id", score="final")
    def rerank(self, products: Annotated[list[Product], xr.Candidates()],
               relevance: dict[str, float],
               weight: Annotated[float, xr.RawInput("relevance_weight")]) -> list[Product]:
        """Blend relevance and personalisation, then cap each brand for a diverse top page."""
        top_rel = max(relevance.values(), default=1.0) or 1.0
        top_pers = max((p["score"] for p in products), default=1.0) or 1.0
        blended = sorted(
            ({**p, "final": round(weight * relevance[p["id"]] / top_rel
                                  + (1 - weight) * p["score"] / top_pers, 4)}
             for p in products),
            key=lambda p: -p["final"],
        )
        page: list[Product] = []
        overflow: list[Product] = []
        per_brand: Counter[str] = Counter()
        for p in blended:
            if per_brand[p["brand"]] < MAX_PER_BRAND:
                per_brand[p["brand"]] += 1
                page.append(p)
            else:
                overflow.append(p)
            if len(page) == RERANK_DEPTH:
                break
        return (page + overflow)[:RERANK_DEPTH]


# --- the demo loop ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """What one demo wrote: counts per label, failures, and where."""

    root: str
    runs: int
    failures: int
    by_label: dict[str, int]
    run_prefix: str  # every run id of this demo starts with a label prefix + this batch tag
    seconds: float
    flushed: bool  # False: some records were spooled or dropped instead (see xr.stats())
    run_ids: list[str] = field(default_factory=list, repr=False)


def run_demo(runs: int = 200, root: str | None = None, seed: int = 7,
             progress: Callable[[int], None] | None = None, *,
             failure_rate: float = 0.02) -> DemoSummary:
    """Record `runs` runs (about 3 in 4 `fashion_search`, the rest `similar_items`).

    Configures the lake root only when `root` is given (otherwise the settings' root is used),
    calls `progress(done)` after each run, and flushes before returning so the lake is
    readable at once. A `CatalogTimeout` is caught: its run is recorded as a failure.
    """
    if runs < 0:
        raise ValueError(f"runs must be >= 0, got {runs}")
    if root is not None:
        xr.configure(root=root)
    started = time.perf_counter()
    rng = random.Random(seed)
    # Timeouts draw from their own stream, so changing the catalog keeps the failing runs.
    catalog = Catalog.generate(rng, timeout_rate=failure_rate,
                               timeout_rng=random.Random(f"timeouts-{seed}"))
    batch = secrets.token_hex(2)
    by_label: Counter[str] = Counter()
    run_ids: list[str] = []
    failures = 0
    for n in range(runs):
        try:
            if rng.random() < 0.25:
                run_id = f"si-{batch}-{n:04d}"
                by_label["similar_items"] += 1
                run_ids.append(run_id)
                SimilarItems(run_id, catalog).similar(rng.choice(catalog.products)["id"])
            else:
                run_id = f"fs-{batch}-{n:04d}"
                by_label["fashion_search"] += 1
                run_ids.append(run_id)
                FashionSearch(run_id, catalog).search(random_query(rng),
                                                      f"u-{rng.randrange(500):03d}")
        except CatalogTimeout:
            failures += 1
        if progress is not None:
            progress(n + 1)
    flushed = xr.flush(FLUSH_TIMEOUT_S)
    return DemoSummary(
        root=xr.get_settings().root, runs=runs, failures=failures, by_label=dict(by_label),
        run_prefix=batch, seconds=time.perf_counter() - started, flushed=flushed,
        run_ids=run_ids,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m xray_lake.demo.fashion_search [--runs N] [--root PATH] [--seed N]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--root", default=None, help="lake root (default: $XRAY_LAKE_ROOT "
                        "or data/lake)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    summary = run_demo(args.runs, args.root, args.seed)
    labels = ", ".join(f"{label}: {n}" for label, n in sorted(summary.by_label.items()))
    print(f"recorded {summary.runs} runs ({labels}; {summary.failures} failed) into "
          f"{Path(summary.root).resolve()} in {summary.seconds:.1f}s")


if __name__ == "__main__":
    main()
