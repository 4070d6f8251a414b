"""LLM-judge example: a custom stage type, metric plugins, and queries on what they recorded.

A product Q&A pipeline retrieves products for a shopper's question, asks an LLM judge
whether each one answers it, and ranks the accepted ones. The judge is a stage type of its
own, `llm_judge`: its candidates carry a `verdict` ("accept", "unsure", "reject"), a
`rationale` and a `confidence`. It is recorded like a filtering stage (kept or dropped, the
verdict as the reason label, the rationale as the reason text) under type `llm_judge`, and
two metric plugins add the share of "reject" verdicts and confidence statistics to each
judge stage's `metrics`. The LLM is faked (keyword overlap), so the script runs offline.

    python examples/llm_judge.py --root /tmp/judge-lake [--runs 50] [--seed 3]
    xray-lake check examples/llm_judge.py       # what it declares, before running anything

Without --root the lake is $XRAY_LAKE_ROOT, else data/lake under the current folder.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Mapping
from typing import Annotated, Any

import polars as pl

import xray_lake as xr
from xray_lake.query import stage

Product = dict[str, Any]


# --- the stage type and its metrics ---------------------------------------------------------


def reject_share(candidates: pl.DataFrame, stage: Mapping[str, Any]) -> float | None:
    """Share of the judged candidates whose verdict is "reject" (None when none was judged)."""
    if candidates.is_empty():
        return None
    return float((candidates["verdict"] == "reject").mean() or 0.0)


xr.register_stage_type(
    "llm_judge",
    base="filtering",
    candidate_fields={
        "verdict": "reason_label",  # the verdict is the reason label (reason_counts counts it)
        "rationale": "reason_text",
        "keep": "passed",
        "confidence": None,  # kept in the payload, and a column for metric plugins
    },
    required=["verdict", "rationale"],
    metrics=[reject_share],
    description="an LLM judges each candidate: a verdict and the rationale for it",
)


@xr.metric("llm_judge", name="confidence")
def confidence_stats(candidates: pl.DataFrame, stage: Mapping[str, Any]) -> dict[str, float]:
    """metrics['confidence.mean'] and ['confidence.min_accepted'] of each judge stage."""
    accepted = candidates.filter(pl.col("verdict") == "accept")["confidence"]
    found = {"mean": candidates["confidence"].mean()}
    if accepted.len():
        found["min_accepted"] = accepted.min()
    return {k: float(v) for k, v in found.items() if isinstance(v, int | float)}


# --- the pipeline ---------------------------------------------------------------------------


def fake_llm(question: str, product: Product, rng: random.Random) -> Product:
    """What an LLM judge would answer for one product: verdict, rationale, confidence."""
    asked = set(question.lower().split())
    shared = sorted(asked & set(product["title"].lower().split()))
    verdict = "accept" if len(shared) >= 2 else "unsure" if shared else "reject"
    rationale = (f"the title mentions {', '.join(shared)}" if shared
                 else "nothing in the title matches the question")
    return {**product, "verdict": verdict, "rationale": rationale,
            "keep": verdict != "reject", "confidence": round(rng.uniform(0.5, 1.0), 2)}


@xr.pipeline("product_qa", id="run_id")
class ProductQA:
    def __init__(self, run_id: str, seed: int) -> None:
        self.run_id = run_id
        self.rng = random.Random(seed)

    @xr.entrypoint
    def answer(self, question: str, catalog: list[Product]) -> list[Product]:
        found = self.search(question, catalog)
        judged = self.judge(question, found)
        return self.rank([p for p in judged if p["keep"]])

    @xr.retrieval_stage("search", id="sku")
    def search(self, question: str, catalog: list[Product]) -> list[Product]:
        """The 8 products sharing most words with the question, and 4 at random (the noise of a
        vector search): the judge should reject those that share none."""
        words = set(question.lower().split())
        overlap = {p["sku"]: len(words & set(p["title"].lower().split())) for p in catalog}
        order = sorted(catalog, key=lambda p: (-overlap[p["sku"]], self.rng.random()))
        return order[:8] + self.rng.sample(order[8:], 4)

    @xr.stage("relevance-judge", type="llm_judge", id="sku")
    def judge(self, question: Annotated[str, xr.RawInput("question")],
              products: Annotated[list[Product], xr.Candidates()]) -> list[Product]:
        return [fake_llm(question, p, self.rng) for p in products]

    @xr.ranking_stage("rerank", id="sku", score="confidence")
    def rank(self, products: list[Product]) -> list[Product]:
        return sorted(products, key=lambda p: -p["confidence"])


CATALOG = [
    {"sku": f"sku-{i:03d}", "title": f"{colour} {material} {kind}", "price": 20 + 7 * i % 180}
    for i, (colour, material, kind) in enumerate(
        (c, m, k)
        for c in ("black", "red", "white", "blue")
        for m in ("leather", "waterproof", "canvas", "wool")
        for k in ("boots", "sneakers", "jacket", "bag"))
]
QUESTIONS = ["waterproof boots for hiking", "black leather jacket", "red canvas sneakers",
             "warm wool bag", "blue boots", "white waterproof jacket please"]


def main() -> None:
    parser = argparse.ArgumentParser(description="Record LLM-judge runs and query them.")
    parser.add_argument("--root", default=None, help="lake root (default: $XRAY_LAKE_ROOT "
                        "or data/lake)")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    if args.root:
        xr.configure(root=args.root)
    root = xr.get_settings().root

    rng = random.Random(args.seed)
    for i in range(args.runs):
        ProductQA(f"qa-{i:04d}", seed=args.seed + i).answer(rng.choice(QUESTIONS), CATALOG)
    if not xr.flush(30):
        raise SystemExit(f"could not write everything to {root}: {xr.stats()}")
    print(f"recorded {args.runs} runs of product_qa into {root}")

    with xr.Lake(root) as lake, pl.Config(tbl_rows=8, tbl_width_chars=120, fmt_str_lengths=40):
        print("\njudge stages that rejected more than a quarter of what they saw (JSON query):")
        print(lake.find({"stage": {"type": "llm_judge",
                                   "$metrics.reject_share": {"$gt": 0.25}}},
                        columns=["run_id", "name", "n_in", "n_out", "metrics"])
              .select("run_id", "name", "n_in", "n_out",
                      pl.col("metrics").alias("metrics (reject_share, confidence.*)")))
        print("\nthe same stages with the typed builder:")
        print(lake.query().where(stage.type == "llm_judge",
                                 stage.metrics["reject_share"] > 0.25).to_polars()
              .select("run_id", "name", "fail_ratio"))
        print("\ndropped candidates per verdict, over every run (reason_counts of the judge):")
        print(lake.sql("select e.key as verdict, sum(e.value)::bigint as candidates "
                       "from (select unnest(map_entries(reason_counts)) as e from stages "
                       "where type = 'llm_judge') group by 1 order by 2 desc"))
        print("\nwhy candidates were rejected, from the candidates table:")
        print(lake.sql("select candidate_id, reason_label as verdict, reason_text as rationale "
                       "from candidates where stage_type = 'llm_judge' and not passed "
                       "limit 5"))


if __name__ == "__main__":
    main()
