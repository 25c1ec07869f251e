"""PIR (perspective-aware retrieval, Zhao et al., COLM 2024) mini sets: BEIR layout plus query metadata.

The query metadata (source query, perspective, label) is kept in the ``metadata`` JSON column. In agnews,
ambigqa and exfever some gold documents have identical copies elsewhere that are not marked relevant, so
scores would depend on tie-breaking; ``mark_duplicates_relevant`` adds those copies to the qrels.
"""

from __future__ import annotations

import json

import pyarrow as pa

from synthir.data import schemas
from synthir.data.beir import RetrievalDataset, load_beir

TASKS = ("allsides", "agnews", "story", "ambigqa", "exfever", "perspectrum")


def load_pir(task: str, mark_duplicates_relevant: bool = True) -> RetrievalDataset:
    """Load a bundled PIR task (test split only) or a PIR-layout path/URI."""
    ds = load_beir(f"pir/{task}" if task in TASKS else task, splits=("test",))
    if mark_duplicates_relevant:
        ds.qrels["test"] = _expand_duplicates(ds.corpus, ds.qrels["test"])
    return ds


def query_metadata(ds: RetrievalDataset) -> dict[str, dict]:
    """``{query_id: metadata dict}`` for a loaded dataset."""
    return {q: json.loads(m) for q, m in zip(ds.queries["id"].to_pylist(), ds.queries["metadata"].to_pylist())}


def _expand_duplicates(corpus: pa.Table, qrels: pa.Table) -> pa.Table:
    by_text: dict[str, list[str]] = {}
    for i, t in zip(corpus["id"].to_pylist(), corpus["text"].to_pylist()):
        by_text.setdefault(t.strip(), []).append(i)
    text_of = dict(zip(corpus["id"].to_pylist(), (t.strip() for t in corpus["text"].to_pylist())))
    seen = set()
    rows = {"query_id": [], "doc_id": [], "score": []}
    for q, d, s in zip(qrels["query_id"].to_pylist(), qrels["doc_id"].to_pylist(), qrels["score"].to_pylist()):
        for copy in by_text[text_of[d]]:
            if (q, copy) not in seen:
                seen.add((q, copy))
                rows["query_id"].append(q)
                rows["doc_id"].append(copy)
                rows["score"].append(s)
    return pa.table(rows, schema=schemas.QRELS)
