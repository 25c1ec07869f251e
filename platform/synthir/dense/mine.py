"""Top-K mining: a retrieval run turned into ranked candidate lists per query (stage-2 candidates, hard negatives)."""

from __future__ import annotations

import pyarrow as pa

TOPK_SCHEMA = pa.schema([("query_id", pa.string()), ("doc_ids", pa.list_(pa.string())), ("scores", pa.list_(pa.float32()))])


def top_k(run: dict[str, dict[str, float]], k: int, exclude: dict[str, dict[str, int]] | None = None) -> pa.Table:
    """The ``k`` best documents per query of ``run`` (ties by id), skipping ``exclude``'s relevant ones (gold)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    qids, docs, scores = [], [], []
    for qid in sorted(run):
        skip = {d for d, s in (exclude or {}).get(qid, {}).items() if s > 0}
        ranked = [(d, s) for d, s in sorted(run[qid].items(), key=lambda x: (-x[1], x[0])) if d not in skip][:k]
        qids.append(qid)
        docs.append([d for d, _ in ranked])
        scores.append([float(s) for _, s in ranked])
    return pa.table({"query_id": qids, "doc_ids": docs, "scores": scores}, schema=TOPK_SCHEMA)
