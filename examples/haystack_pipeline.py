"""A Haystack pipeline instrumented with xray-lake decorators, over Python's own pydoc topics.

Haystack components take keyword arguments and return dicts of named outputs
(`{"documents": [...]}`), and keep a document's facts in `Document.meta`. The decorators
meet them there: `output_key="documents"` names the list in the returned dict, dotted paths
(`meta.drop_reason`, `meta.keyword_score`) read fields inside `meta`, the retriever
records its BM25 score with `score="score"`, and `candidates="documents"` names the list
parameter of a component that takes more than one argument (Haystack connects components by
their annotations, so an `Annotated[..., xr.Candidates()]` marker would not connect).

    InMemoryBM25Retriever (top 50) -> length filter -> keyword scorer -> top 5

The corpus is the pydoc topics shipped with Python (`pydoc_data.topics`), so the script runs
offline. Haystack's telemetry is switched off.

    python examples/haystack_pipeline.py --root /tmp/hs-lake [--runs 10]
    xray-lake show RUN_ID --root /tmp/hs-lake
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")

from pydoc_data.topics import topics

from haystack import Document, Pipeline, component
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
from haystack.document_stores.in_memory import InMemoryDocumentStore

import xray_lake as xr

QUESTIONS = ["how do for loops work", "what does the with statement do", "exception handling",
             "how are classes defined", "string formatting", "import a module",
             "lambda expressions", "comparison operators", "assert statement", "yield"]


def document_store() -> InMemoryDocumentStore:
    store = InMemoryDocumentStore()
    store.write_documents([Document(id=name, content=text, meta={"topic": name})
                           for name, text in sorted(topics.items())])
    return store


@component
class Retriever:
    """BM25 over the store, recorded as the retrieval stage with each document's score."""

    def __init__(self, store: InMemoryDocumentStore, top_k: int = 50) -> None:
        self.bm25 = InMemoryBM25Retriever(store, top_k=top_k)

    @component.output_types(documents=list[Document])
    @xr.retrieval_stage("bm25", score="score", output_key="documents")
    def run(self, query: str) -> dict[str, list[Document]]:
        return self.bm25.run(query=query)


@component
class LengthFilter:
    """Keeps documents of a readable length; returns only the survivors, so the dropped ones
    are the inputs missing from the output, with the reason each input carries in meta."""

    def __init__(self, min_chars: int = 400, max_chars: int = 20_000) -> None:
        self.min_chars, self.max_chars = min_chars, max_chars

    @component.output_types(documents=list[Document])
    @xr.filtering_stage("length-filter", reason_label="meta.drop_reason", output_key="documents")
    def run(self, documents: list[Document]) -> dict[str, list[Document]]:
        kept = []
        for doc in documents:
            size = len(doc.content or "")
            reason = ("too_short" if size < self.min_chars else
                      "too_long" if size > self.max_chars else None)
            doc.meta["drop_reason"] = reason
            if reason is None:
                kept.append(doc)
        return {"documents": kept}


@component
class KeywordScorer:
    """Share of the query's words found in the document: a second opinion next to BM25."""

    @component.output_types(documents=list[Document])
    @xr.scoring_stage("keyword-score", score="meta.keyword_score", output_key="documents",
                      candidates="documents")
    def run(self, documents: list[Document], query: str) -> dict[str, list[Document]]:
        words = {w for w in query.lower().split() if len(w) > 2}
        for doc in documents:
            text = (doc.content or "").lower()
            doc.meta["keyword_score"] = sum(w in text for w in words) / max(len(words), 1)
        return {"documents": documents}


@component
class TopK:
    @component.output_types(documents=list[Document])
    @xr.ranking_stage("top-5", score="meta.keyword_score", output_key="documents")
    def run(self, documents: list[Document]) -> dict[str, list[Document]]:
        ranked = sorted(documents, key=lambda d: (-d.meta["keyword_score"], -(d.score or 0.0)))
        return {"documents": ranked[:5]}


def build(store: InMemoryDocumentStore) -> Pipeline:
    pipeline = Pipeline()
    pipeline.add_component("retriever", Retriever(store))
    pipeline.add_component("length", LengthFilter())
    pipeline.add_component("scorer", KeywordScorer())
    pipeline.add_component("top", TopK())
    pipeline.connect("retriever.documents", "length.documents")
    pipeline.connect("length.documents", "scorer.documents")
    pipeline.connect("scorer.documents", "top.documents")
    return pipeline


def main(argv: list[str] | None = None) -> list[str]:
    """Record one run per question; returns the run ids."""
    parser = argparse.ArgumentParser(description="Record Haystack pipeline runs.")
    parser.add_argument("--root", default=None, help="lake root (default: $XRAY_LAKE_ROOT "
                        "or data/lake)")
    parser.add_argument("--runs", type=int, default=len(QUESTIONS))
    args = parser.parse_args(argv)
    if args.root:
        xr.configure(root=args.root)
    pipeline = build(document_store())
    run_ids = []
    for i in range(args.runs):
        question = QUESTIONS[i % len(QUESTIONS)]
        with xr.run("pydoc_search", run_id=f"hs-{i:04d}", input={"query": question}) as run:
            result = pipeline.run({"retriever": {"query": question},
                                   "scorer": {"query": question}})
            run.set_output([d.id for d in result["top"]["documents"]])
        run_ids.append(f"hs-{i:04d}")
    root = xr.get_settings().root
    if not xr.flush(60):
        raise SystemExit(f"could not write everything to {root}: {xr.stats()}")
    print(f"recorded {args.runs} runs of pydoc_search into {root}")
    with xr.Lake(root) as lake:
        print(lake.sql("select name, type, avg(n_in) n_in, avg(n_out) n_out, avg(fail_ratio) "
                       "fail_ratio from stages group by 1, 2 order by min(seq)"))
    return run_ids


if __name__ == "__main__":
    main()
