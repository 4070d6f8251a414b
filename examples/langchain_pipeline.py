"""A LangChain retrieval pipeline instrumented with xray-lake decorators.

LangChain's own pieces, unchanged: an InMemoryVectorStore of product descriptions with a
deterministic fake embedding (so the script runs offline), its similarity search, and
`Document`s that keep their facts in `metadata`. The stages show the framework shapes:

- the retrieval stage returns a dict (`{"documents": [...]}`, the shape of a Haystack
  component's output): `output_key="documents"` names the list, `score="metadata.score"`
  records each document's similarity;
- the filtering stage reads its pass flag and reason from `metadata` by dotted paths;
- the ranking stage records the new order and score (`score="metadata.rank_score"`).

    python examples/langchain_pipeline.py --root /tmp/lc-lake [--runs 20]
    xray-lake show RUN_ID --root /tmp/lc-lake

Without --root the lake is $XRAY_LAKE_ROOT, else data/lake under the current folder.
"""

from __future__ import annotations

import argparse
import random
from typing import Annotated

from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore

import xray_lake as xr

COLOURS = ["red", "blue", "black", "white", "green"]
KINDS = ["running shoe", "trail shoe", "sandal", "boot", "sneaker"]


def catalog(n: int = 200, seed: int = 7) -> list[Document]:
    rng = random.Random(seed)
    return [Document(id=f"p{i:04d}",
                     page_content=f"{rng.choice(COLOURS)} {rng.choice(KINDS)} model {i}",
                     metadata={"price": round(rng.uniform(20, 250), 2),
                               "stock": rng.choice([0, 0, 3, 12, 40])})
            for i in range(n)]


def vector_store(documents: list[Document]) -> InMemoryVectorStore:
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=64))
    store.add_documents(documents)
    return store


@xr.pipeline("langchain_shop", id="run_id")
class ShopSearch:
    def __init__(self, run_id: str, store: InMemoryVectorStore, budget: float) -> None:
        self.run_id = run_id
        self.store = store
        self.budget = budget

    @xr.entrypoint
    def answer(self, question: str) -> list[str]:
        found = self.retrieve(question)
        checked = self.check(found["documents"])
        return [d.page_content for d in self.rank(checked)[:3]]

    @xr.retrieval_stage("vector-search", score="metadata.score", output_key="documents")
    def retrieve(self, question: str) -> dict[str, list[Document]]:
        hits = self.store.similarity_search_with_score(question, k=20)
        documents = []
        for doc, score in hits:
            doc.metadata["score"] = score
            documents.append(doc)
        return {"documents": documents}

    @xr.filtering_stage("buyable", passed="metadata.ok", reason_label="metadata.reason")
    def check(self, documents: Annotated[list[Document], xr.Candidates()]) -> list[Document]:
        for doc in documents:
            meta = doc.metadata
            meta["ok"] = meta["stock"] > 0 and meta["price"] <= self.budget
            meta["reason"] = (None if meta["ok"] else
                              "out_of_stock" if meta["stock"] == 0 else "over_budget")
        return documents

    @xr.ranking_stage("rerank", score="metadata.rank_score")
    def rank(self, documents: Annotated[list[Document], xr.Candidates()]) -> list[Document]:
        kept = [d for d in documents if d.metadata["ok"]]
        for doc in kept:  # cheaper and well stocked first, similarity breaking ties
            meta = doc.metadata
            meta["rank_score"] = meta["score"] - meta["price"] / 1000 + min(meta["stock"], 20) / 100
        return sorted(kept, key=lambda d: -d.metadata["rank_score"])


def main(argv: list[str] | None = None) -> list[str]:
    """Record the runs; returns their run ids."""
    parser = argparse.ArgumentParser(description="Record LangChain retrieval runs.")
    parser.add_argument("--root", default=None, help="lake root (default: $XRAY_LAKE_ROOT "
                        "or data/lake)")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    if args.root:
        xr.configure(root=args.root)
    store = vector_store(catalog())
    rng = random.Random(1)
    run_ids = []
    for i in range(args.runs):
        question = f"{rng.choice(COLOURS)} {rng.choice(KINDS)}"
        ShopSearch(f"lc-{i:04d}", store, budget=rng.choice([60.0, 120.0, 250.0])).answer(question)
        run_ids.append(f"lc-{i:04d}")
    root = xr.get_settings().root
    if not xr.flush(60):
        raise SystemExit(f"could not write everything to {root}: {xr.stats()}")
    print(f"recorded {args.runs} runs of langchain_shop into {root}")
    with xr.Lake(root) as lake:
        print(lake.sql("select name, type, avg(n_in) n_in, avg(n_out) n_out, avg(fail_ratio) "
                       "fail_ratio from stages group by 1, 2 order by min(seq)"))
    return run_ids


if __name__ == "__main__":
    main()
