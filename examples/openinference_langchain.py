"""An OpenInference-instrumented LangChain pipeline whose traces `xray-lake collect` records.

The pipeline is plain LangChain: a retriever over an InMemoryVectorStore (deterministic fake
embedding), a reranker, a stock filter, a prompt and an LLM (a fake one, so it runs offline).
`openinference-instrumentation-langchain` traces it; the reranker, which LangChain does not
trace as such, opens its own span with OpenInference's RERANKER attributes. Spans go over
OTLP/HTTP to the collector, which records each trace as a run: the retriever's documents and
the reranker's input and output documents become candidate rows.

    xray-lake collect --root /tmp/oi-lake          # in one terminal
    python examples/openinference_langchain.py     # in another (--endpoint URL, --runs N)
    xray-lake runs --root /tmp/oi-lake             # after Ctrl-C on the collector

The endpoint defaults to $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else
http://127.0.0.1:4318/v1/traces.
"""

from __future__ import annotations

import argparse
import json
import os
import random

from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.prompts import PromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.vectorstores import InMemoryVectorStore
from openinference.instrumentation.langchain import LangChainInstrumentor, get_current_span
from openinference.semconv.trace import (
    DocumentAttributes,
    OpenInferenceSpanKindValues,
    RerankerAttributes,
    SpanAttributes,
)
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

DEFAULT_ENDPOINT = "http://127.0.0.1:4318/v1/traces"
COLOURS = ["red", "blue", "black", "white", "green"]
KINDS = ["running shoe", "trail shoe", "sandal", "boot", "sneaker"]


def catalog(n: int = 200, seed: int = 7) -> list[Document]:
    rng = random.Random(seed)
    return [Document(id=f"p{i:04d}",
                     page_content=f"{rng.choice(COLOURS)} {rng.choice(KINDS)} model {i}",
                     metadata={"price": round(rng.uniform(20, 250), 2),
                               "stock": rng.choice([0, 0, 3, 12, 40])})
            for i in range(n)]


def _document_attributes(prefix: str, documents: list[Document],
                         scores: list[float] | None = None) -> dict[str, object]:
    attributes: dict[str, object] = {}
    for i, doc in enumerate(documents):
        attributes[f"{prefix}.{i}.{DocumentAttributes.DOCUMENT_ID}"] = str(doc.id)
        attributes[f"{prefix}.{i}.{DocumentAttributes.DOCUMENT_CONTENT}"] = doc.page_content
        attributes[f"{prefix}.{i}.{DocumentAttributes.DOCUMENT_METADATA}"] = json.dumps(
            doc.metadata)
        if scores is not None:
            attributes[f"{prefix}.{i}.{DocumentAttributes.DOCUMENT_SCORE}"] = scores[i]
    return attributes


def build_chain(provider: TracerProvider) -> Runnable[str, str]:
    """retriever -> rerank (its own RERANKER span) -> in stock -> prompt -> LLM."""
    tracer = provider.get_tracer("shop-rag")
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=64))
    store.add_documents(catalog())
    retriever = store.as_retriever(search_kwargs={"k": 20})

    def rerank(documents: list[Document]) -> list[Document]:
        # the instrumentor traces through LangChain's callbacks: its span of this step is
        # the parent to give, as it is not OpenTelemetry's current span
        parent = get_current_span()
        context = trace.set_span_in_context(parent) if parent is not None else None
        with tracer.start_as_current_span("price-rerank", context=context) as span:
            ranked = sorted(documents, key=lambda d: d.metadata["price"])[:10]
            span.set_attributes({
                SpanAttributes.OPENINFERENCE_SPAN_KIND: OpenInferenceSpanKindValues.RERANKER.value,
                RerankerAttributes.RERANKER_TOP_K: 10,
                **_document_attributes(RerankerAttributes.RERANKER_INPUT_DOCUMENTS, documents),
                **_document_attributes(RerankerAttributes.RERANKER_OUTPUT_DOCUMENTS, ranked,
                                       [1.0 / (1 + d.metadata["price"]) for d in ranked]),
            })
            return ranked

    def in_stock(documents: list[Document]) -> dict[str, str]:
        kept = [d.page_content for d in documents if d.metadata["stock"] > 0][:3]
        return {"products": "; ".join(kept) or "nothing"}

    prompt = PromptTemplate.from_template("Recommend one of: {products}")
    llm = FakeListLLM(responses=["Take the first one.", "The second fits best."])
    return retriever | RunnableLambda(rerank) | RunnableLambda(in_stock) | prompt | llm


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Send OpenInference traces to a collector.")
    parser.add_argument("--endpoint", default=os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", DEFAULT_ENDPOINT))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    provider = TracerProvider(resource=Resource.create({"service.name": "shop-rag"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=args.endpoint)))
    instrumentor = LangChainInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        chain = build_chain(provider)
        rng = random.Random(3)
        for _ in range(args.runs):
            chain.invoke(f"{rng.choice(COLOURS)} {rng.choice(KINDS)}")
    finally:
        instrumentor.uninstrument()
        provider.shutdown()  # exports what is left
    print(f"sent {args.runs} traces to {args.endpoint}")


if __name__ == "__main__":
    main()
