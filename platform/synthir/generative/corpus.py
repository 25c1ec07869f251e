"""Corpus preparation for generative retrieval: identical texts, token chunks, synthesis contexts and sentences.

* ``collapse_identical``: byte-identical documents become one document (the first id in corpus order), and
  their qrels are mapped onto it. PIR AGNews has 500 documents but 230 distinct texts: without collapsing, a
  query whose target has identical twins cannot be answered at rank 1 by any retriever more than by chance.
* ``chunk_text``: a document cut into windows of at most ``chunk_tokens`` tokens of the model's own tokenizer,
  without overlap (Wen et al. 2025: Context2ID chunks of <= 256 tokens); every chunk maps to its document's ID.
* ``synthesis_context`` / ``split_sentences``: what the synthesis LLM reads. The recorded PIR teacher saw each
  document's first 320 words, and for sentence-level queries the first 8 sentences of at least 8 words of that
  context (split after ``.``, ``!`` or ``?`` followed by whitespace and a capital, a quote or an opening
  parenthesis); these functions reproduce exactly those requests, so a replay matches them by content.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from synthir.config import StrictModel

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"\u201c'\u2018(])")


class CorpusConfig(StrictModel):
    """How documents become Context2ID chunks and synthesis contexts (paper: 256-token chunks, no overlap)."""

    chunk_tokens: int = Field(256, ge=8, description="Context2ID chunk length in model tokens (no overlap)")
    max_chunks_per_doc: int | None = Field(None, ge=1, description="keep only the first N chunks of a document "
                                           "(a CPU-budget reduction; None: every chunk, as in the paper)")
    collapse_identical: bool = Field(True, description="byte-identical documents become one, their qrels merged")
    context_words: int = Field(320, ge=16, description="words of a document the synthesis LLM reads (the recorded "
                               "PIR teacher read the first 320; the paper wrote queries per 256-token chunk)")
    sentences_per_doc: int = Field(8, ge=0, description="sentences per document that get sentence-level queries")
    min_sentence_words: int = Field(8, ge=1, description="shorter sentences get no sentence-level query")


def collapse_identical(doc_ids: list[str], texts: list[str]) -> dict[str, str]:
    """``{doc_id: canonical doc_id}``: every document maps to the first document in order with the same text."""
    first: dict[str, str] = {}
    return {d: first.setdefault(t, d) for d, t in zip(doc_ids, texts)}


def map_qrels(qrels: dict[str, dict[str, int]], canonical: dict[str, str]) -> dict[str, dict[str, int]]:
    """Qrels with every document replaced by its canonical id (the highest grade wins where two merge)."""
    out: dict[str, dict[str, int]] = {}
    for q, docs in qrels.items():
        merged = out.setdefault(q, {})
        for d, grade in docs.items():
            c = canonical.get(d, d)
            merged[c] = max(grade, merged.get(c, grade))
    return out


def chunk_text(text: str, tokenizer: Any, chunk_tokens: int, max_chunks: int | None = None) -> list[str]:
    """``text`` cut into consecutive windows of at most ``chunk_tokens`` tokens (decoded back to text)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    windows = [ids[i:i + chunk_tokens] for i in range(0, len(ids), chunk_tokens)] or [[]]
    if max_chunks:
        windows = windows[:max_chunks]
    return [tokenizer.decode(w, skip_special_tokens=True).strip() for w in windows]


def synthesis_context(text: str, words: int) -> str:
    """The first ``words`` whitespace-separated words of ``text``, joined by single spaces."""
    return " ".join(text.split()[:words])


def split_sentences(context: str, min_words: int, limit: int) -> list[str]:
    """The first ``limit`` sentences of ``context`` with at least ``min_words`` words."""
    if limit == 0:
        return []
    sentences = [s for s in _SENTENCE_END.split(context) if len(s.split()) >= min_words]
    return sentences[:limit]


def collapsed_dataset(dataset: Any) -> tuple[Any, dict[str, str]]:
    """A ``RetrievalDataset`` whose byte-identical documents are one (the first), every split's qrels mapped onto it."""
    import pyarrow as pa

    from synthir.data import schemas
    from synthir.data.beir import RetrievalDataset

    ids, titles, texts = (dataset.corpus[c].to_pylist() for c in ("id", "title", "text"))
    canonical = collapse_identical(ids, [schemas.passage_text(t, x) for t, x in zip(titles, texts)])
    corpus = dataset.corpus.filter(pa.array([canonical[d] == d for d in ids]))
    qrels = {}
    for split in dataset.qrels:
        mapped = map_qrels(dataset.qrels_dict(split), canonical)
        rows = [(q, d, s) for q, docs in mapped.items() for d, s in docs.items()]
        qrels[split] = pa.table({"query_id": [r[0] for r in rows], "doc_id": [r[1] for r in rows],
                                 "score": [r[2] for r in rows]}, schema=schemas.QRELS)
    return RetrievalDataset(name=dataset.name, root=dataset.root, corpus=corpus, queries=dataset.queries, qrels=qrels), canonical
