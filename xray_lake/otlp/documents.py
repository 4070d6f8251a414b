"""OpenInference's flattened document lists, read while a span's attributes are decoded.

OpenInference writes a retriever's or reranker's documents as one attribute per field:
`retrieval.documents.3.document.score`, `reranker.output_documents.0.document.id`. A span
with 50 documents has 200 such attributes; they are grouped into documents in the same pass
that decodes them, each key looked up once in a table of the keys seen (a bounded cache:
known fields and indexes up to `MAX_INDEX` only).
"""

from __future__ import annotations

from openinference.semconv.trace import DocumentAttributes, RerankerAttributes, SpanAttributes

LISTS = (SpanAttributes.RETRIEVAL_DOCUMENTS, RerankerAttributes.RERANKER_INPUT_DOCUMENTS,
         RerankerAttributes.RERANKER_OUTPUT_DOCUMENTS)
PREFIXES = tuple(f"{name}." for name in LISTS)
# OpenInference document fields -> the candidate's keys
FIELDS = {
    DocumentAttributes.DOCUMENT_ID: "id",
    DocumentAttributes.DOCUMENT_SCORE: "score",
    DocumentAttributes.DOCUMENT_CONTENT: "content",
    DocumentAttributes.DOCUMENT_METADATA: "metadata",
}
MAX_INDEX = 10_000

Documents = dict[int, dict[str, object]]  # index -> the document's fields
Slot = tuple[str, int]  # (list, index): one document
Location = tuple[Slot, str]  # the document, and the candidate key of the field
SEEN: dict[str, Location] = {}  # read directly by the decoding loop


def locate(key: str) -> Location | None:
    """Where attribute `key` belongs in a document list, or None if it is no document field."""
    hit = SEEN.get(key)
    if hit is not None:
        return hit
    for name, prefix in zip(LISTS, PREFIXES, strict=True):
        if key.startswith(prefix):
            index, _, field = key[len(prefix):].partition(".")
            if not index.isdigit() or not field:
                return None
            known = FIELDS.get(field)
            hit = ((name, int(index)), known or field.removeprefix("document."))
            if known is not None and hit[0][1] <= MAX_INDEX:
                SEEN[key] = hit
            return hit
    return None


def group(slots: dict[Slot, dict[str, object]]) -> dict[str, Documents]:
    """Documents by list name, from the documents by (list, index) the decoding loop made."""
    lists: dict[str, Documents] = {}
    for (name, index), doc in slots.items():
        docs = lists.get(name)
        if docs is None:
            docs = lists[name] = {}
        docs[index] = doc
    return lists
