"""The demo's product catalog: a seeded store of fashion products and the shoppers' queries.

`Catalog.generate` builds a reproducible catalog with an inverted index; `Catalog.lookup`
answers key lookups and now and then times out (`CatalogTimeout`), as a real catalog
service would. `random_query` draws a shopper's query from weighted templates.
`CatalogPipeline` is what the demo pipelines (`fashion_search`, `similar_items`) share.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

# Products are plain dicts (as they come out of a JSON catalog API). Not a TypedDict on
# purpose: stages add fields such as `score` or `passed` to them.
Product = dict[str, Any]

CATALOG_SIZE = 3000

# category -> (singular noun, typical price)
CATEGORIES: dict[str, tuple[str, float]] = {
    "dresses": ("dress", 55.0),
    "jeans": ("jeans", 60.0),
    "t-shirts": ("t-shirt", 20.0),
    "sneakers": ("sneaker", 80.0),
    "boots": ("boot", 110.0),
    "jackets": ("jacket", 120.0),
    "skirts": ("skirt", 40.0),
    "hoodies": ("hoodie", 45.0),
    "bags": ("bag", 70.0),
    "scarves": ("scarf", 25.0),
}
NOUNS: dict[str, str] = {
    **{category: category for category in CATEGORIES},
    **{noun: category for category, (noun, _) in CATEGORIES.items()},
}
COLOURS = ("black", "white", "red", "blue", "green", "beige", "pink", "grey", "navy", "yellow")
TAGS = ("summer", "winter", "casual", "formal", "sport", "vintage", "organic", "slim",
        "oversized", "waterproof")
BRANDS = ("Aster", "Boreal", "Cobalt", "Dune", "Ember", "Fjord", "Gala", "Harbor", "Iris",
          "Juniper", "Kestrel", "Lumen", "Moss", "Nadir", "Orchid", "Pine", "Quill", "Rook",
          "Sable", "Tundra")
MATERIALS = ("cotton", "denim", "wool", "linen", "leather", "polyester", "recycled nylon")
SIZES = ("XS", "S", "M", "L", "XL")
ADJECTIVES = ("classic", "relaxed", "cropped", "essential", "tailored", "soft", "washed",
              "everyday", "premium", "light")
PRICE_CAPS = (25, 30, 40, 60, 80, 120)

# Query shapes with their weights: the strict ones (colour + category + price cap) make the
# attribute filter drop > 90% of the catalog's matches, the loose ones almost nothing.
QUERY_TEMPLATES: tuple[tuple[str, int], ...] = (
    ("{colour} {noun} under {price}", 3),
    ("{colour} {noun}", 2),
    ("{noun}", 2),
    ("{noun} under {price}", 2),
    ("{tag} {noun}", 2),
    ("{brand} {noun}", 1),
    ("{colour} {tag}", 1),
    ("{adjective} {tag} {noun}", 1),
)


class CatalogTimeout(TimeoutError):
    """The catalog service did not answer in time; `code` becomes the run's error_code."""

    code = "CATALOG_TIMEOUT"


class Catalog:
    """The product store: products with an inverted index, and an occasional timeout."""

    def __init__(self, products: list[Product], rng: random.Random,
                 timeout_rate: float) -> None:
        self.products = products
        self.by_id: dict[str, Product] = {p["id"]: p for p in products}
        self._rng = rng
        self._timeout_rate = timeout_rate
        index: defaultdict[str, list[int]] = defaultdict(list)
        for i, p in enumerate(products):
            for key in _index_keys(p):
                index[key].append(i)
        by_rating = sorted(range(len(products)), key=lambda i: -products[i]["rating"])
        index["top-rated"] = sorted(by_rating[:400])
        self._index = dict(index)

    @classmethod
    def generate(cls, rng: random.Random, size: int = CATALOG_SIZE, timeout_rate: float = 0.02,
                 timeout_rng: random.Random | None = None) -> Catalog:
        """A reproducible catalog of `size` products (~250 bytes each as JSON)."""
        products: list[Product] = []
        for n in range(size):
            category = rng.choice(list(CATEGORIES))
            noun, typical = CATEGORIES[category]
            brand = rng.choice(BRANDS)
            colour = rng.choice(COLOURS)
            adjective = rng.choice(ADJECTIVES)
            products.append({
                "id": f"p-{n:05d}",
                "title": f"{brand} {adjective} {colour} {noun}",
                "brand": brand,
                "category": category,
                "colour": colour,
                "price": round(typical * rng.lognormvariate(0.0, 0.45), 2),
                "in_stock": rng.random() < 0.88,
                "rating": round(min(5.0, max(1.0, rng.gauss(3.9, 0.6))), 1),
                "reviews": int(rng.paretovariate(1.2) * 5),
                "tags": sorted(rng.sample(TAGS, rng.randint(1, 3))),
                "material": rng.choice(MATERIALS),
                "sizes": [s for s in SIZES if rng.random() < 0.7] or ["M"],
            })
        return cls(products, timeout_rng or rng, timeout_rate)

    def lookup(self, keys: Iterable[str]) -> list[Product]:
        """Products matching any key (`category:dresses`, `colour:red`, ...), catalog order."""
        if self._rng.random() < self._timeout_rate:
            raise CatalogTimeout("catalog search did not answer within 800 ms")
        hits: set[int] = set()
        for key in keys:
            hits.update(self._index.get(key, ()))
        return [self.products[i] for i in sorted(hits)]


def _index_keys(p: Product) -> list[str]:
    words = [f"word:{w}" for w in p["title"].lower().split()]
    return [f"category:{p['category']}", f"colour:{p['colour']}", f"brand:{p['brand'].lower()}",
            *(f"tag:{t}" for t in p["tags"]), *words]


def random_query(rng: random.Random) -> str:
    """A shopper's query drawn from the weighted templates."""
    templates = [t for t, _ in QUERY_TEMPLATES]
    template: str = rng.choices(templates, [w for _, w in QUERY_TEMPLATES])[0]
    category = rng.choice(list(CATEGORIES))
    return template.format(
        colour=rng.choice(COLOURS),
        noun=rng.choice((category, CATEGORIES[category][0])),
        tag=rng.choice(TAGS),
        brand=rng.choice(BRANDS),
        adjective=rng.choice(ADJECTIVES),
        price=rng.choice(PRICE_CAPS),
    )


class CatalogPipeline:
    """Base of the demo pipelines: one instance per run, holding the run id (the attribute
    their `@xr.pipeline(..., id="run_id")` names) and the catalog they search."""

    def __init__(self, run_id: str, catalog: Catalog) -> None:
        self.run_id = run_id
        self.catalog = catalog
